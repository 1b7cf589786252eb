//! Figures as data, rendered to 1200 × 800 PNGs with `plotters`.
//!
//! An experiment describes what to draw ([`Figure`] of [`Panel`]s); this module
//! decides how. Text uses DejaVu Sans, bundled under `assets/fonts/` and
//! registered with plotters' `ab_glyph` backend, so no system font (and no
//! fontconfig) is needed on the machine that renders.

use std::path::Path;
use std::sync::{Once, OnceLock};

use ab_glyph::{point, Font, FontRef, PxScale, ScaleFont};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters_backend::{
    BackendColor, BackendCoord, BackendStyle, BackendTextStyle, DrawingErrorKind,
};

/// Size of every PNG the experiments write.
pub const WIDTH: u32 = 1200;
pub const HEIGHT: u32 = 800;

const FONT: &str = "sans-serif";
static DEJAVU_SANS: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");

/// A qualitative palette (Tableau 10): distinguishable, and readable on white.
pub const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];
/// Removed tokens and "before" distributions.
pub const GHOST: RGBColor = RGBColor(200, 200, 200);
const REFERENCE: RGBColor = RGBColor(200, 150, 0);

pub fn color(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

/// One PNG: a title over a grid of panels (filled row by row).
#[derive(Debug, Clone)]
pub struct Figure {
    /// File name inside the output folder, e.g. `temperature_bars.png`.
    pub file: String,
    pub title: String,
    /// Rows × columns of the panel grid.
    pub grid: (usize, usize),
    pub panels: Vec<Panel>,
}

#[derive(Debug, Clone)]
pub enum Panel {
    Bars(Bars),
    Lines(Lines),
    Heat(Heat),
    Scatter(Scatter),
    Table(TextTable),
}

/// Horizontal bars, one band per category (listed top to bottom).
#[derive(Debug, Clone)]
pub struct Bars {
    pub title: String,
    pub categories: Vec<String>,
    pub series: Vec<BarSeries>,
    /// Label of the value axis, with its unit.
    pub value_label: String,
    /// Value axis range; `None` = from 0 to 110 % of the largest value.
    pub range: Option<(f64, f64)>,
    /// A dashed reference line at this value, with its legend text.
    pub reference: Option<(f64, String)>,
    /// Print each `Bar` series value at the end of its bar.
    pub annotate: bool,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum BarKind {
    /// A filled bar; several `Bar` series share the band side by side.
    Bar,
    /// A light full-band bar drawn behind the others ("before" values).
    Ghost,
    /// A black dot at the value (e.g. an empirical frequency).
    Marker,
}

#[derive(Debug, Clone)]
pub struct BarSeries {
    pub label: String,
    pub values: Vec<f64>,
    pub color: RGBColor,
    pub kind: BarKind,
}

impl BarSeries {
    pub fn bar(label: impl Into<String>, values: Vec<f64>, color: RGBColor) -> Self {
        BarSeries {
            label: label.into(),
            values,
            color,
            kind: BarKind::Bar,
        }
    }
    pub fn ghost(label: impl Into<String>, values: Vec<f64>) -> Self {
        BarSeries {
            label: label.into(),
            values,
            color: GHOST,
            kind: BarKind::Ghost,
        }
    }
    pub fn marker(label: impl Into<String>, values: Vec<f64>) -> Self {
        BarSeries {
            label: label.into(),
            values,
            color: BLACK,
            kind: BarKind::Marker,
        }
    }
}

impl Bars {
    /// Probabilities of `categories` on a 0–1 axis.
    pub fn probabilities(title: String, categories: Vec<String>, series: Vec<BarSeries>) -> Self {
        Bars {
            title,
            categories,
            series,
            value_label: "probability".into(),
            range: Some((0.0, 1.0)),
            reference: None,
            annotate: false,
        }
    }
}

/// Line charts over a numeric x axis (or categories at x = 0, 1, …).
#[derive(Debug, Clone)]
pub struct Lines {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub series: Vec<LineSpec>,
    pub x_range: Option<(f64, f64)>,
    pub y_range: Option<(f64, f64)>,
    /// Dashed vertical/horizontal reference lines with their legend text.
    pub vlines: Vec<(f64, String)>,
    pub hlines: Vec<(f64, String)>,
    /// Names for x = 0, 1, …; the x axis then shows these instead of numbers.
    pub x_categories: Option<Vec<String>>,
}

#[derive(Debug, Clone)]
pub struct LineSpec {
    pub label: String,
    pub points: Vec<(f64, f64)>,
    pub color: RGBColor,
    /// Draw the polyline.
    pub line: bool,
    /// Draw a dot at every point.
    pub markers: bool,
}

impl LineSpec {
    pub fn line(label: impl Into<String>, points: Vec<(f64, f64)>, color: RGBColor) -> Self {
        LineSpec {
            label: label.into(),
            points,
            color,
            line: true,
            markers: false,
        }
    }
    pub fn dots(label: impl Into<String>, points: Vec<(f64, f64)>, color: RGBColor) -> Self {
        LineSpec {
            label: label.into(),
            points,
            color,
            line: false,
            markers: true,
        }
    }
    pub fn with_markers(mut self) -> Self {
        self.markers = true;
        self
    }
}

/// A heat map: `z[row][column]`, rows listed top to bottom.
#[derive(Debug, Clone)]
pub struct Heat {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    /// Either numeric cell centres (ascending) …
    pub x: Vec<f64>,
    /// … or category names (then `x` is ignored).
    pub x_categories: Option<Vec<String>>,
    pub y_categories: Vec<String>,
    pub z: Vec<Vec<f64>>,
    /// Colour-bar label, with unit.
    pub z_label: String,
    /// Colour scale; `None` = the data's min..max.
    pub z_range: Option<(f64, f64)>,
    /// Write each value in its cell (small grids).
    pub annotate: bool,
}

/// Labelled points, optional shaded zones and a dashed crosshair.
#[derive(Debug, Clone)]
pub struct Scatter {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub points: Vec<(f64, f64, String, RGBColor)>,
    pub x_range: (f64, f64),
    pub y_range: (f64, f64),
    pub crosshair: Option<(f64, f64)>,
    pub zones: Vec<Zone>,
}

/// A rectangle `(x0, y0)`–`(x1, y1)` shaded in a light colour, with a label.
pub type Zone = ((f64, f64), (f64, f64), RGBColor, String);

/// A small table drawn as text.
#[derive(Debug, Clone)]
pub struct TextTable {
    pub title: String,
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

/// Why a figure could not be written.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct PlotError {
    pub message: String,
}

fn err<E: std::fmt::Display>(what: &str) -> impl FnOnce(E) -> PlotError + '_ {
    move |e| PlotError {
        message: format!("{what}: {e}"),
    }
}

type Area<'a> = DrawingArea<Crisp<'a>, Shift>;
type PResult<T = ()> = std::result::Result<T, PlotError>;

fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The bundled file is a valid TrueType font; a failure here would be a
        // build defect, and text would then fail loudly at draw time.
        let _ = plotters::style::register_font(FONT, FontStyle::Normal, DEJAVU_SANS);
    });
}

fn font(size: f64) -> TextStyle<'static> {
    (FONT, size).into_font().color(&BLACK)
}

/// The bitmap backend with text laid out and rasterised here: plotters' own
/// ab_glyph path places every glyph at its advance without its side bearing,
/// which spreads "1.5" into "1 .5". Everything else is the bitmap backend's.
pub struct Crisp<'a>(BitMapBackend<'a>);

type CrispError<'a> = DrawingErrorKind<<BitMapBackend<'a> as DrawingBackend>::ErrorType>;

fn face() -> &'static FontRef<'static> {
    static FACE: OnceLock<FontRef<'static>> = OnceLock::new();
    // The font is compiled in; a failure to parse it is a build defect that
    // the plot tests catch, never something user input can cause.
    FACE.get_or_init(|| FontRef::try_from_slice(DEJAVU_SANS).expect("bundled DejaVu Sans parses"))
}

/// Glyphs and their pen positions, the width, the ascent and the line height
/// of `text` at `size` pixels.
fn layout(text: &str, size: f64) -> (Vec<(ab_glyph::GlyphId, f32)>, f32, f32, f32) {
    let font = face().as_scaled(PxScale::from(size as f32));
    let mut glyphs = Vec::with_capacity(text.len());
    let (mut x, mut prev) = (0.0f32, None);
    for c in text.chars() {
        let id = font.glyph_id(c);
        if let Some(p) = prev {
            x += font.kern(p, id);
        }
        glyphs.push((id, x));
        x += font.h_advance(id);
        prev = Some(id);
    }
    (glyphs, x, font.ascent(), font.ascent() - font.descent())
}

impl<'a> DrawingBackend for Crisp<'a> {
    type ErrorType = <BitMapBackend<'a> as DrawingBackend>::ErrorType;

    fn get_size(&self) -> (u32, u32) {
        self.0.get_size()
    }
    fn ensure_prepared(&mut self) -> Result<(), CrispError<'a>> {
        self.0.ensure_prepared()
    }
    fn present(&mut self) -> Result<(), CrispError<'a>> {
        self.0.present()
    }
    fn draw_pixel(
        &mut self,
        point: BackendCoord,
        color: BackendColor,
    ) -> Result<(), CrispError<'a>> {
        self.0.draw_pixel(point, color)
    }
    fn draw_line<S: BackendStyle>(
        &mut self,
        from: BackendCoord,
        to: BackendCoord,
        style: &S,
    ) -> Result<(), CrispError<'a>> {
        self.0.draw_line(from, to, style)
    }
    fn draw_rect<S: BackendStyle>(
        &mut self,
        upper_left: BackendCoord,
        bottom_right: BackendCoord,
        style: &S,
        fill: bool,
    ) -> Result<(), CrispError<'a>> {
        self.0.draw_rect(upper_left, bottom_right, style, fill)
    }
    fn draw_path<S: BackendStyle, I: IntoIterator<Item = BackendCoord>>(
        &mut self,
        path: I,
        style: &S,
    ) -> Result<(), CrispError<'a>> {
        self.0.draw_path(path, style)
    }
    fn draw_circle<S: BackendStyle>(
        &mut self,
        center: BackendCoord,
        radius: u32,
        style: &S,
        fill: bool,
    ) -> Result<(), CrispError<'a>> {
        self.0.draw_circle(center, radius, style, fill)
    }
    fn fill_polygon<S: BackendStyle, I: IntoIterator<Item = BackendCoord>>(
        &mut self,
        vert: I,
        style: &S,
    ) -> Result<(), CrispError<'a>> {
        self.0.fill_polygon(vert, style)
    }
    fn blit_bitmap(
        &mut self,
        pos: BackendCoord,
        (iw, ih): (u32, u32),
        src: &[u8],
    ) -> Result<(), CrispError<'a>> {
        self.0.blit_bitmap(pos, (iw, ih), src)
    }

    fn estimate_text_size<S: BackendTextStyle>(
        &self,
        text: &str,
        style: &S,
    ) -> Result<(u32, u32), CrispError<'a>> {
        let (_, width, _, height) = layout(text, style.size());
        Ok((width.ceil() as u32, height.ceil() as u32))
    }

    fn draw_text<S: BackendTextStyle>(
        &mut self,
        text: &str,
        style: &S,
        pos: BackendCoord,
    ) -> Result<(), CrispError<'a>> {
        let color = style.color();
        if color.alpha == 0.0 {
            return Ok(());
        }
        let size = style.size();
        let (glyphs, width, ascent, height) = layout(text, size);
        let anchor = style.anchor();
        let dx = match anchor.h_pos {
            HPos::Left => 0.0,
            HPos::Right => -width,
            HPos::Center => -width / 2.0,
        };
        let dy = match anchor.v_pos {
            VPos::Top => 0.0,
            VPos::Center => -height / 2.0,
            VPos::Bottom => -height,
        };
        let trans = style.transform();
        let font = face().as_scaled(PxScale::from(size as f32));
        let mut failure = None;
        for (id, x) in glyphs {
            let glyph = id.with_scale_and_position(font.scale(), point(x + dx, ascent + dy));
            let Some(outline) = font.outline_glyph(glyph) else {
                continue;
            };
            let b = outline.px_bounds();
            outline.draw(|gx, gy, coverage| {
                if coverage <= 0.0 || failure.is_some() {
                    return;
                }
                let (tx, ty) =
                    trans.transform(b.min.x as i32 + gx as i32, b.min.y as i32 + gy as i32);
                let c = BackendColor {
                    alpha: color.alpha * coverage.min(1.0) as f64,
                    rgb: color.rgb,
                };
                if let Err(e) = self.0.draw_pixel((pos.0 + tx, pos.1 + ty), c) {
                    failure = Some(e);
                }
            });
        }
        failure.map_or(Ok(()), Err)
    }
}

/// Renders `figure` to `path` (PNG, [`WIDTH`] × [`HEIGHT`]).
pub fn render(figure: &Figure, path: &Path) -> PResult {
    // The file is created first, so a path that cannot be written is the
    // OS's one-line reason, not the plotting backend's chain of wrappers.
    std::fs::File::create(path).map_err(|e| PlotError {
        message: e.to_string(),
    })?;
    register_font();
    let root = Crisp(BitMapBackend::new(path, (WIDTH, HEIGHT))).into_drawing_area();
    root.fill(&WHITE).map_err(err("fill"))?;
    let body = root
        .titled(&figure.title, font(24.0))
        .map_err(err("figure title"))?;
    let (rows, cols) = figure.grid;
    let cells = body.split_evenly((rows.max(1), cols.max(1)));
    for (panel, area) in figure.panels.iter().zip(cells.iter()) {
        match panel {
            Panel::Bars(b) => draw_bars(area, b)?,
            Panel::Lines(l) => draw_lines(area, l)?,
            Panel::Heat(h) => draw_heat(area, h)?,
            Panel::Scatter(s) => draw_scatter(area, s)?,
            Panel::Table(t) => draw_table(area, t)?,
        }
    }
    root.present().map_err(err("encoding the image"))?;
    Ok(())
}

/// A panel caption at 16 px, smaller (down to 11 px) if it would not fit.
fn caption_font(title: &str, area: &Area) -> TextStyle<'static> {
    let avail = area.dim_in_pixel().0.saturating_sub(16) as f64;
    let (_, width, _, _) = layout(title, 16.0);
    let size = if width as f64 > avail {
        (16.0 * avail / width as f64).max(11.0)
    } else {
        16.0
    };
    font(size)
}

/// Pixels a label column needs for these strings at 13 px.
fn label_width(labels: &[String]) -> u32 {
    let longest = labels.iter().map(|s| s.chars().count()).max().unwrap_or(4);
    (longest as u32 * 8 + 14).clamp(40, 190)
}

/// The category at tick `y`, where category `j` (top to bottom) sits at
/// `y = n − 1 − j`; empty between categories.
fn category_at(categories: &[String], y: f64) -> String {
    let n = categories.len();
    let r = y.round();
    if (y - r).abs() > 1e-6 || r < 0.0 || r as usize >= n {
        return String::new();
    }
    categories[n - 1 - r as usize].clone()
}

fn draw_bars(area: &Area, b: &Bars) -> PResult {
    let n = b.categories.len().max(1);
    let max_value = b
        .series
        .iter()
        .flat_map(|s| s.values.iter().copied())
        .chain(b.reference.iter().map(|r| r.0))
        .fold(0.0f64, f64::max);
    let (lo, hi) = b.range.unwrap_or((
        0.0,
        if max_value > 0.0 {
            max_value * 1.12
        } else {
            1.0
        },
    ));
    let mut chart = ChartBuilder::on(area)
        .caption(&b.title, caption_font(&b.title, area))
        .margin(8)
        .x_label_area_size(42)
        .y_label_area_size(label_width(&b.categories))
        .build_cartesian_2d(lo..hi, -0.5f64..(n as f64 - 0.5))
        .map_err(err("bar chart"))?;
    let fmt = |y: &f64| category_at(&b.categories, *y);
    let num_fmt = |v: &f64| short_number(*v);
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(n + 1)
        .x_labels(6)
        .y_label_formatter(&fmt)
        .x_label_formatter(&num_fmt)
        .x_desc(b.value_label.as_str())
        .label_style(font(13.0))
        .axis_desc_style(font(14.0))
        .light_line_style(RGBColor(238, 238, 238))
        .max_light_lines(1)
        .draw()
        .map_err(err("bar axes"))?;

    let y_of = |j: usize| (n - 1 - j) as f64;
    let bars: Vec<&BarSeries> = b.series.iter().filter(|s| s.kind == BarKind::Bar).collect();
    let band = 0.8;
    let mut legend = false;
    for s in b.series.iter().filter(|s| s.kind == BarKind::Ghost) {
        let style = s.color.filled();
        let anno = chart
            .draw_series(s.values.iter().enumerate().map(|(j, &v)| {
                Rectangle::new(
                    [
                        (lo, y_of(j) - band / 2.0),
                        (v.max(lo), y_of(j) + band / 2.0),
                    ],
                    style,
                )
            }))
            .map_err(err("bars"))?;
        if !s.label.is_empty() {
            anno.label(s.label.as_str())
                .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 14, y + 5)], style));
            legend = true;
        }
    }
    let width = band / bars.len().max(1) as f64;
    for (k, s) in bars.iter().enumerate() {
        let style = s.color.filled();
        let anno = chart
            .draw_series(s.values.iter().enumerate().map(|(j, &v)| {
                let top = y_of(j) + band / 2.0 - k as f64 * width;
                Rectangle::new([(lo, top - width * 0.92), (v.max(lo), top)], style)
            }))
            .map_err(err("bars"))?;
        if !s.label.is_empty() {
            anno.label(s.label.as_str())
                .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 14, y + 5)], style));
            legend = true;
        }
        if b.annotate {
            let text = font(12.0).pos(Pos::new(HPos::Left, VPos::Center));
            chart
                .draw_series(s.values.iter().enumerate().map(|(j, &v)| {
                    let top = y_of(j) + band / 2.0 - k as f64 * width;
                    Text::new(
                        short_number(v),
                        (v.max(lo) + (hi - lo) * 0.01, top - width / 2.0),
                        text.clone(),
                    )
                }))
                .map_err(err("bar values"))?;
        }
    }
    for s in b.series.iter().filter(|s| s.kind == BarKind::Marker) {
        let anno = chart
            .draw_series(
                s.values
                    .iter()
                    .enumerate()
                    .map(|(j, &v)| Circle::new((v, y_of(j)), 3, BLACK.filled())),
            )
            .map_err(err("markers"))?;
        if !s.label.is_empty() {
            anno.label(s.label.as_str())
                .legend(|(x, y)| Circle::new((x + 7, y), 4, BLACK.filled()));
            legend = true;
        }
    }
    if let Some((r, label)) = &b.reference {
        let style = ShapeStyle::from(REFERENCE).stroke_width(2);
        chart
            .draw_series(DashedLineSeries::new(
                vec![(*r, -0.5), (*r, n as f64 - 0.5)],
                8,
                5,
                style,
            ))
            .map_err(err("reference line"))?
            .label(label.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 14, y)], style));
        legend = true;
    }
    if legend {
        // The legend goes to the half (top or bottom) whose bars are shorter.
        let half_max = |top: bool| {
            b.series
                .iter()
                .flat_map(|s| s.values.iter().enumerate())
                .filter(|(j, _)| (*j < n / 2) == top)
                .map(|(_, &v)| v)
                .fold(lo, f64::max)
        };
        let position = if half_max(true) < half_max(false) {
            SeriesLabelPosition::UpperRight
        } else {
            SeriesLabelPosition::LowerRight
        };
        chart
            .configure_series_labels()
            .position(position)
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(180, 180, 180))
            .label_font(font(12.0))
            .draw()
            .map_err(err("legend"))?;
    }
    Ok(())
}

/// A compact number for labels: 3 significant digits, no exponent noise.
pub fn short_number(v: f64) -> String {
    if (v == v.round() && v.abs() < 1e6) || v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else if v.abs() >= 0.001 {
        let s = format!("{v:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        format!("{v:.1e}")
    }
}

fn padded(lo: f64, hi: f64) -> (f64, f64) {
    if hi > lo {
        let pad = (hi - lo) * 0.05;
        (lo - pad, hi + pad)
    } else {
        (lo - 0.5, hi + 0.5)
    }
}

fn draw_lines(area: &Area, l: &Lines) -> PResult {
    let xs = l.series.iter().flat_map(|s| s.points.iter().map(|p| p.0));
    let ys = l.series.iter().flat_map(|s| s.points.iter().map(|p| p.1));
    let (x_lo, x_hi) = l.x_range.unwrap_or_else(|| {
        let (a, b) = min_max(xs);
        padded(a, b)
    });
    let (y_lo, y_hi) = l.y_range.unwrap_or_else(|| {
        let (a, b) = min_max(ys.chain(l.hlines.iter().map(|h| h.0)));
        padded(a.min(0.0), b)
    });
    let mut chart = ChartBuilder::on(area)
        .caption(&l.title, caption_font(&l.title, area))
        .margin(10)
        .x_label_area_size(if l.x_categories.is_some() { 48 } else { 42 })
        .y_label_area_size(64)
        .build_cartesian_2d(x_lo..x_hi, y_lo..y_hi)
        .map_err(err("line chart"))?;
    let cats = l.x_categories.clone().unwrap_or_default();
    let cat_fmt = |x: &f64| {
        let r = x.round();
        if (x - r).abs() < 1e-6 && r >= 0.0 && (r as usize) < cats.len() {
            cats[r as usize].clone()
        } else {
            String::new()
        }
    };
    let num_fmt = |v: &f64| short_number(*v);
    let mut mesh = chart.configure_mesh();
    mesh.x_desc(l.x_label.as_str())
        .y_desc(l.y_label.as_str())
        .label_style(font(13.0))
        .axis_desc_style(font(14.0))
        .light_line_style(RGBColor(238, 238, 238))
        .max_light_lines(1)
        .y_label_formatter(&num_fmt);
    if l.x_categories.is_some() {
        mesh.x_labels(cats.len() + 1).x_label_formatter(&cat_fmt);
    } else {
        mesh.x_labels(8).x_label_formatter(&num_fmt);
    }
    mesh.draw().map_err(err("line axes"))?;

    let mut legend = false;
    for s in &l.series {
        let style = ShapeStyle::from(s.color).stroke_width(2);
        let fill = s.color.filled();
        if s.line {
            let anno = chart
                .draw_series(LineSeries::new(s.points.iter().copied(), style))
                .map_err(err("line"))?;
            if !s.label.is_empty() {
                anno.label(s.label.as_str())
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], style));
            }
        }
        if s.markers {
            let anno = chart
                .draw_series(s.points.iter().map(|&p| Circle::new(p, 4, fill)))
                .map_err(err("markers"))?;
            if !s.line && !s.label.is_empty() {
                anno.label(s.label.as_str())
                    .legend(move |(x, y)| Circle::new((x + 8, y), 4, fill));
            }
        }
        legend |= !s.label.is_empty();
    }
    for (v, label) in &l.vlines {
        let style = ShapeStyle::from(REFERENCE).stroke_width(2);
        chart
            .draw_series(DashedLineSeries::new(
                vec![(*v, y_lo), (*v, y_hi)],
                8,
                5,
                style,
            ))
            .map_err(err("reference line"))?
            .label(label.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], style));
        legend = true;
    }
    for (k, (v, label)) in l.hlines.iter().enumerate() {
        let shade = [
            RGBColor(120, 120, 120),
            RGBColor(170, 60, 60),
            RGBColor(60, 60, 170),
        ][k % 3];
        let style = ShapeStyle::from(shade).stroke_width(2);
        chart
            .draw_series(DashedLineSeries::new(
                vec![(x_lo, *v), (x_hi, *v)],
                8,
                5,
                style,
            ))
            .map_err(err("reference line"))?
            .label(label.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], style));
        legend = true;
    }
    if legend {
        // Keep the legend off the data: lower right when the right end of the
        // curves is high.
        let right: Vec<f64> = l
            .series
            .iter()
            .flat_map(|s| s.points.iter())
            .filter(|p| p.0 >= x_lo + 0.7 * (x_hi - x_lo))
            .map(|p| p.1)
            .collect();
        let high = !right.is_empty()
            && right
                .iter()
                .filter(|&&y| y > y_lo + 0.55 * (y_hi - y_lo))
                .count()
                * 2
                > right.len();
        chart
            .configure_series_labels()
            .position(if high {
                SeriesLabelPosition::LowerRight
            } else {
                SeriesLabelPosition::UpperRight
            })
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(180, 180, 180))
            .label_font(font(12.0))
            .draw()
            .map_err(err("legend"))?;
    }
    Ok(())
}

fn min_max(it: impl Iterator<Item = f64>) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in it.filter(|v| v.is_finite()) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if lo > hi {
        (0.0, 1.0)
    } else {
        (lo, hi)
    }
}

fn draw_heat(area: &Area, h: &Heat) -> PResult {
    // Colour bar on the right, unless the scale needs no explaining (empty
    // `z_label`).
    let (w, _) = area.dim_in_pixel();
    let bar_w = if h.z_label.is_empty() { 0 } else { 110 };
    let (plot_area, bar_area) = area.split_horizontally(w.saturating_sub(bar_w));
    let rows = h.y_categories.len().max(1);
    let (z_lo, z_hi) = h
        .z_range
        .unwrap_or_else(|| min_max(h.z.iter().flat_map(|r| r.iter().copied())));
    let z_span = if z_hi > z_lo { z_hi - z_lo } else { 1.0 };
    // Cell edges along x.
    let (edges, x_lo, x_hi) = match &h.x_categories {
        Some(c) => {
            let e: Vec<f64> = (0..=c.len()).map(|i| i as f64 - 0.5).collect();
            (e, -0.5, c.len() as f64 - 0.5)
        }
        None => {
            let x = &h.x;
            let mut e = Vec::with_capacity(x.len() + 1);
            let first = if x.len() > 1 {
                x[0] - (x[1] - x[0]) / 2.0
            } else {
                x[0] - 0.5
            };
            e.push(first);
            for i in 0..x.len() {
                let next = if i + 1 < x.len() {
                    (x[i] + x[i + 1]) / 2.0
                } else if i > 0 {
                    x[i] + (x[i] - x[i - 1]) / 2.0
                } else {
                    x[i] + 0.5
                };
                e.push(next);
            }
            let (lo, hi) = (e[0], e[e.len() - 1]);
            (e, lo, hi)
        }
    };
    let mut label_cats = h.y_categories.clone();
    label_cats.push(String::new());
    let mut chart = ChartBuilder::on(&plot_area)
        .caption(&h.title, caption_font(&h.title, &plot_area))
        .margin(10)
        .x_label_area_size(if h.x_categories.is_some() { 48 } else { 42 })
        .y_label_area_size(label_width(&label_cats) + if h.y_label.is_empty() { 0 } else { 22 })
        .build_cartesian_2d(x_lo..x_hi, -0.5f64..(rows as f64 - 0.5))
        .map_err(err("heat map"))?;
    let yfmt = |y: &f64| category_at(&h.y_categories, *y);
    let xcats = h.x_categories.clone().unwrap_or_default();
    let xcat_fmt = |x: &f64| {
        let r = x.round();
        if (x - r).abs() < 1e-6 && r >= 0.0 && (r as usize) < xcats.len() {
            xcats[r as usize].clone()
        } else {
            String::new()
        }
    };
    let num_fmt = |v: &f64| short_number(*v);
    let mut mesh = chart.configure_mesh();
    mesh.disable_mesh()
        .y_labels(rows + 1)
        .y_label_formatter(&yfmt)
        .x_desc(h.x_label.as_str())
        .y_desc(h.y_label.as_str())
        .label_style(font(13.0))
        .axis_desc_style(font(14.0));
    if h.x_categories.is_some() {
        mesh.x_labels(xcats.len() + 1).x_label_formatter(&xcat_fmt);
    } else {
        mesh.x_labels(10).x_label_formatter(&num_fmt);
    }
    mesh.draw().map_err(err("heat axes"))?;

    let colour = |v: f64| ViridisRGB::get_color(((v - z_lo) / z_span).clamp(0.0, 1.0));
    for (j, row) in h.z.iter().enumerate() {
        let y = (rows - 1 - j) as f64;
        chart
            .draw_series(row.iter().enumerate().map(|(i, &v)| {
                Rectangle::new(
                    [(edges[i], y - 0.5), (edges[i + 1], y + 0.5)],
                    colour(v).filled(),
                )
            }))
            .map_err(err("heat cells"))?;
        if h.annotate {
            chart
                .draw_series(row.iter().enumerate().map(|(i, &v)| {
                    let t = (v - z_lo) / z_span;
                    let ink = if t > 0.6 {
                        font(13.0).color(&BLACK)
                    } else {
                        font(13.0).color(&WHITE)
                    };
                    Text::new(
                        short_number(v),
                        ((edges[i] + edges[i + 1]) / 2.0, y),
                        ink.pos(Pos::new(HPos::Center, VPos::Center)),
                    )
                }))
                .map_err(err("heat values"))?;
        }
    }

    if h.z_label.is_empty() {
        return Ok(());
    }
    let mut bar = ChartBuilder::on(&bar_area)
        .margin_top(40)
        .margin_bottom(50)
        .margin_right(8)
        .y_label_area_size(50)
        .build_cartesian_2d(0f64..1.0, z_lo..(z_lo + z_span))
        .map_err(err("colour bar"))?;
    bar.configure_mesh()
        .disable_mesh()
        .disable_x_axis()
        .y_labels(6)
        .y_label_formatter(&num_fmt)
        .y_desc(h.z_label.as_str())
        .label_style(font(12.0))
        .axis_desc_style(font(13.0))
        .draw()
        .map_err(err("colour bar axes"))?;
    let steps = 100;
    bar.draw_series((0..steps).map(|k| {
        let a = z_lo + z_span * k as f64 / steps as f64;
        let b = z_lo + z_span * (k + 1) as f64 / steps as f64;
        Rectangle::new([(0.0, a), (1.0, b)], colour((a + b) / 2.0).filled())
    }))
    .map_err(err("colour bar"))?;
    Ok(())
}

fn draw_scatter(area: &Area, s: &Scatter) -> PResult {
    let mut chart = ChartBuilder::on(area)
        .caption(&s.title, caption_font(&s.title, area))
        .margin(12)
        .x_label_area_size(42)
        .y_label_area_size(56)
        .build_cartesian_2d(s.x_range.0..s.x_range.1, s.y_range.0..s.y_range.1)
        .map_err(err("scatter"))?;
    let num_fmt = |v: &f64| short_number(*v);
    chart
        .configure_mesh()
        .x_desc(s.x_label.as_str())
        .y_desc(s.y_label.as_str())
        .x_label_formatter(&num_fmt)
        .y_label_formatter(&num_fmt)
        .label_style(font(13.0))
        .axis_desc_style(font(14.0))
        .light_line_style(RGBColor(240, 240, 240))
        .max_light_lines(1)
        .draw()
        .map_err(err("scatter axes"))?;
    for (a, b, c, label) in &s.zones {
        chart
            .draw_series(std::iter::once(Rectangle::new(
                [*a, *b],
                c.mix(0.18).filled(),
            )))
            .map_err(err("zone"))?;
        chart
            .draw_series(std::iter::once(Text::new(
                label.clone(),
                (a.0 + (b.0 - a.0) * 0.03, b.1 - (b.1 - a.1) * 0.05),
                font(13.0).color(&c.mix(0.9)),
            )))
            .map_err(err("zone label"))?;
    }
    if let Some((cx, cy)) = s.crosshair {
        let style = ShapeStyle::from(RGBColor(120, 120, 120)).stroke_width(1);
        chart
            .draw_series(DashedLineSeries::new(
                vec![(cx, s.y_range.0), (cx, s.y_range.1)],
                6,
                5,
                style,
            ))
            .map_err(err("crosshair"))?;
        chart
            .draw_series(DashedLineSeries::new(
                vec![(s.x_range.0, cy), (s.x_range.1, cy)],
                6,
                5,
                style,
            ))
            .map_err(err("crosshair"))?;
    }
    for (x, y, label, c) in &s.points {
        chart
            .draw_series(std::iter::once(Circle::new((*x, *y), 8, c.filled())))
            .map_err(err("point"))?;
        chart
            .draw_series(std::iter::once(Text::new(
                label.clone(),
                (*x, *y),
                font(14.0).pos(Pos::new(HPos::Left, VPos::Bottom)),
            )))
            .map_err(err("point label"))?;
    }
    Ok(())
}

fn draw_table(area: &Area, t: &TextTable) -> PResult {
    let (w, h) = area.dim_in_pixel();
    let title = font(16.0).pos(Pos::new(HPos::Center, VPos::Top));
    area.draw_text(&t.title, &title, ((w / 2) as i32, 10))
        .map_err(err("table title"))?;
    let cols = t.header.len().max(1);
    // Column widths in proportion to their longest entry.
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            t.rows
                .iter()
                .map(|r| r.get(c).map_or(0, |s| s.chars().count()))
                .chain(std::iter::once(t.header[c].chars().count()))
                .max()
                .unwrap_or(1)
                + 2
        })
        .collect();
    let total: usize = widths.iter().sum();
    let usable = w.saturating_sub(30) as f64;
    let line_h = ((h.saturating_sub(50)) as f64 / (t.rows.len() + 1) as f64).clamp(14.0, 30.0);
    let size = (line_h * 0.62).clamp(11.0, 15.0);
    let mut y = 44.0;
    for (r, cells) in std::iter::once(&t.header).chain(t.rows.iter()).enumerate() {
        if r > 0 && r % 2 == 1 {
            area.draw(&Rectangle::new(
                [
                    (12, (y - line_h * 0.15) as i32),
                    ((w - 12) as i32, (y + line_h * 0.85) as i32),
                ],
                RGBColor(242, 245, 250).filled(),
            ))
            .map_err(err("table band"))?;
        }
        let mut x = 15.0;
        for (c, cell) in cells.iter().enumerate().take(cols) {
            let style = font(size).pos(Pos::new(HPos::Left, VPos::Top));
            let style = if r == 0 {
                style.color(&RGBColor(40, 40, 120))
            } else {
                style
            };
            area.draw_text(cell, &style, (x as i32, y as i32))
                .map_err(err("table cell"))?;
            x += usable * widths[c] as f64 / total as f64;
        }
        if r == 0 {
            let yl = (y + line_h * 0.85) as i32;
            area.draw(&PathElement::new(
                vec![(12, yl), ((w - 12) as i32, yl)],
                BLACK,
            ))
            .map_err(err("table rule"))?;
        }
        y += line_h;
    }
    Ok(())
}
