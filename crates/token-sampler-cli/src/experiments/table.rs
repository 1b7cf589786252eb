//! Result tables: one per CSV file, also printed as text, Markdown, HTML and JSON.

use serde_json::{json, Value};

/// One table cell.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Num(f64),
    Int(i64),
    Text(String),
}

impl From<f64> for Cell {
    fn from(v: f64) -> Self {
        Cell::Num(v)
    }
}
impl From<usize> for Cell {
    fn from(v: usize) -> Self {
        Cell::Int(v as i64)
    }
}
impl From<u32> for Cell {
    fn from(v: u32) -> Self {
        Cell::Int(v as i64)
    }
}
impl From<i32> for Cell {
    fn from(v: i32) -> Self {
        Cell::Int(v as i64)
    }
}
impl From<&str> for Cell {
    fn from(v: &str) -> Self {
        Cell::Text(v.to_string())
    }
}
impl From<String> for Cell {
    fn from(v: String) -> Self {
        Cell::Text(v)
    }
}
impl From<&String> for Cell {
    fn from(v: &String) -> Self {
        Cell::Text(v.clone())
    }
}

/// `row![a, b, c]`: a table row from values convertible into [`Cell`].
#[macro_export]
#[doc(hidden)]
macro_rules! __experiment_row {
    ($($x:expr),* $(,)?) => {
        vec![$($crate::experiments::table::Cell::from($x)),*]
    };
}
pub use crate::__experiment_row as row;

impl Cell {
    /// Full precision, as CSV and JSON carry it. Tiny and huge values use an
    /// exponent so a CSV stays readable (every form parses as f64).
    pub fn csv(&self) -> String {
        match self {
            Cell::Num(v) => {
                if *v != 0.0 && (v.abs() < 1e-4 || v.abs() >= 1e15) {
                    format!("{v:e}")
                } else {
                    format!("{v}")
                }
            }
            Cell::Int(v) => v.to_string(),
            Cell::Text(s) => {
                if s.contains([',', '"', '\n']) {
                    format!("\"{}\"", s.replace('"', "\"\""))
                } else {
                    s.clone()
                }
            }
        }
    }

    /// Four decimals, for people.
    pub fn display(&self) -> String {
        match self {
            Cell::Num(v) => {
                if *v != 0.0 && v.abs() < 5e-5 {
                    format!("{v:.2e}")
                } else {
                    format!("{v:.4}")
                }
            }
            Cell::Int(v) => v.to_string(),
            Cell::Text(s) => s.clone(),
        }
    }

    pub fn json(&self) -> Value {
        match self {
            Cell::Num(v) => json!(v),
            Cell::Int(v) => json!(v),
            Cell::Text(s) => json!(s),
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Cell::Num(v) => Some(*v),
            Cell::Int(v) => Some(*v as f64),
            Cell::Text(_) => None,
        }
    }
}

/// A named table; `name` is also the CSV file stem.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    pub name: String,
    pub title: String,
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Cell>>,
}

impl Table {
    pub fn new(name: &str, title: &str, columns: &[&str]) -> Self {
        Table {
            name: name.to_string(),
            title: title.to_string(),
            columns: columns.iter().map(|c| c.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    /// Appends a row; its length must match the header (a programming error
    /// otherwise, never user input).
    pub fn push(&mut self, row: Vec<Cell>) {
        assert_eq!(
            row.len(),
            self.columns.len(),
            "table {}: row width",
            self.name
        );
        self.rows.push(row);
    }

    /// The column named `name`.
    pub fn column(&self, name: &str) -> Option<Vec<&Cell>> {
        let i = self.columns.iter().position(|c| c == name)?;
        Some(self.rows.iter().map(|r| &r[i]).collect())
    }

    pub fn file_name(&self) -> String {
        format!("{}.csv", self.name)
    }

    pub fn to_csv(&self) -> String {
        let mut out = self.columns.join(",");
        out.push('\n');
        for r in &self.rows {
            out.push_str(&r.iter().map(Cell::csv).collect::<Vec<_>>().join(","));
            out.push('\n');
        }
        out
    }

    /// `{"title", "columns", "rows": [{column: value, …}, …]}`.
    pub fn to_json(&self) -> Value {
        let rows: Vec<Value> = self
            .rows
            .iter()
            .map(|r| {
                let obj: serde_json::Map<String, Value> = self
                    .columns
                    .iter()
                    .zip(r)
                    .map(|(c, v)| (c.clone(), v.json()))
                    .collect();
                Value::Object(obj)
            })
            .collect();
        json!({ "title": self.title, "columns": self.columns, "rows": rows })
    }

    fn shown(&self, max_rows: usize) -> (&[Vec<Cell>], usize) {
        let n = self.rows.len().min(max_rows);
        (&self.rows[..n], self.rows.len() - n)
    }

    /// Aligned text for the terminal, at most `max_rows` rows.
    pub fn to_text(&self, max_rows: usize) -> String {
        let (rows, hidden) = self.shown(max_rows);
        let cells: Vec<Vec<String>> = rows
            .iter()
            .map(|r| r.iter().map(Cell::display).collect())
            .collect();
        let widths: Vec<usize> = (0..self.columns.len())
            .map(|c| {
                cells
                    .iter()
                    .map(|r| r[c].chars().count())
                    .chain(std::iter::once(self.columns[c].chars().count()))
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let line = |vals: &[String]| {
            vals.iter()
                .zip(&widths)
                .map(|(v, w)| format!("{v:>w$}"))
                .collect::<Vec<_>>()
                .join("  ")
        };
        let mut out = format!("{}\n{}\n", self.title, line(&self.columns));
        for r in &cells {
            out.push_str(&line(r));
            out.push('\n');
        }
        if hidden > 0 {
            out.push_str(&format!(
                "… {hidden} more rows ({}.csv with --out, or --json)\n",
                self.name
            ));
        }
        out
    }

    pub fn to_markdown(&self, max_rows: usize) -> String {
        let (rows, hidden) = self.shown(max_rows);
        let mut out = format!("| {} |\n", self.columns.join(" | "));
        out.push_str(&format!(
            "|{}\n",
            self.columns.iter().map(|_| "---|").collect::<String>()
        ));
        for r in rows {
            out.push_str(&format!(
                "| {} |\n",
                r.iter().map(Cell::display).collect::<Vec<_>>().join(" | ")
            ));
        }
        if hidden > 0 {
            out.push_str(&format!(
                "\n… {hidden} more rows in [{}]({}).\n",
                self.file_name(),
                self.file_name()
            ));
        }
        out
    }

    /// An HTML table; `href` is the CSV's path relative to the page.
    pub fn to_html(&self, max_rows: usize, href: &str) -> String {
        let (rows, hidden) = self.shown(max_rows);
        let mut out = format!(
            "<table>\n<caption>{} (<a href=\"{}\">{}</a>)</caption>\n<tr>",
            escape(&self.title),
            escape(href),
            escape(&self.file_name())
        );
        for c in &self.columns {
            out.push_str(&format!("<th>{}</th>", escape(c)));
        }
        out.push_str("</tr>\n");
        for r in rows {
            out.push_str("<tr>");
            for v in r {
                let class = if matches!(v, Cell::Text(_)) {
                    ""
                } else {
                    " class=\"n\""
                };
                out.push_str(&format!("<td{class}>{}</td>", escape(&v.display())));
            }
            out.push_str("</tr>\n");
        }
        if hidden > 0 {
            out.push_str(&format!(
                "<tr><td colspan=\"{}\">… {hidden} more rows in the CSV</td></tr>\n",
                self.columns.len()
            ));
        }
        out.push_str("</table>\n");
        out
    }
}

pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_text_and_keeps_numbers_parseable() {
        let mut t = Table::new("t", "T", &["name", "x", "n"]);
        t.push(row!["a,b", 3.4e-10, 7usize]);
        t.push(row!["plain", 0.25, 0usize]);
        let csv = t.to_csv();
        assert_eq!(csv, "name,x,n\n\"a,b\",3.4e-10,7\nplain,0.25,0\n");
        assert_eq!("3.4e-10".parse::<f64>().unwrap(), 3.4e-10);
        assert_eq!(t.to_json()["rows"][1]["x"], 0.25);
    }
}
