//! Logit batches: an owned [`Batch`] (B rows × V entries, row-major f32), a
//! borrowed [`LogitsView`] that every backend takes, and loaders for `.npy`,
//! `.json` and raw little-endian files (docs/spec.md §8).
//!
//! Loaders reject NaN and +inf (naming row and index), ragged rows, empty
//! vocabularies and truncated files; −inf is a legal masked logit.

use std::borrow::Cow;
use std::path::{Path, PathBuf};

use half::slice::HalfFloatSliceExt;
use half::{bf16, f16};

use npyz::WriterBuilder;

use crate::error::{Result, SamplerError};

/// Element type of logits: in a [`LogitsView`], a raw file, or a caller's GPU
/// buffer (docs/spec.md §8, §11). Half-precision values are widened exactly
/// to f32, so a batch gives the same results in any of the three types as
/// its f32 widening.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogitsDtype {
    F32,
    /// IEEE binary16.
    F16,
    /// bfloat16.
    Bf16,
}

/// The element type of a raw logits file (the same three types).
pub type RawDtype = LogitsDtype;

impl LogitsDtype {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            LogitsDtype::F32 => 4,
            LogitsDtype::F16 | LogitsDtype::Bf16 => 2,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            LogitsDtype::F32 => "f32",
            LogitsDtype::F16 => "f16",
            LogitsDtype::Bf16 => "bf16",
        }
    }
}

impl std::str::FromStr for LogitsDtype {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "f32" => Ok(LogitsDtype::F32),
            "f16" => Ok(LogitsDtype::F16),
            "bf16" => Ok(LogitsDtype::Bf16),
            other => Err(format!(
                "unknown dtype `{other}` (expected f32, f16 or bf16)"
            )),
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Elems<'a> {
    F32(&'a [f32]),
    F16(&'a [f16]),
    Bf16(&'a [bf16]),
}

impl<'a> Elems<'a> {
    fn len(&self) -> usize {
        match self {
            Elems::F32(d) => d.len(),
            Elems::F16(d) => d.len(),
            Elems::Bf16(d) => d.len(),
        }
    }

    fn slice(&self, start: usize, end: usize) -> Elems<'a> {
        match self {
            Elems::F32(d) => Elems::F32(&d[start..end]),
            Elems::F16(d) => Elems::F16(&d[start..end]),
            Elems::Bf16(d) => Elems::Bf16(&d[start..end]),
        }
    }

    fn to_f32(self) -> Cow<'a, [f32]> {
        match self {
            Elems::F32(d) => Cow::Borrowed(d),
            Elems::F16(d) => Cow::Owned(d.iter().map(|h| h.to_f32()).collect()),
            Elems::Bf16(d) => Cow::Owned(d.iter().map(|h| h.to_f32()).collect()),
        }
    }
}

/// A borrowed B × V view of row-major logits: f32, or f16 / bf16 (half the
/// bytes to upload to a GPU; widened exactly to f32 wherever they are read,
/// docs/spec.md §8).
#[derive(Debug, Clone, Copy)]
pub struct LogitsView<'a> {
    data: Elems<'a>,
    rows: usize,
    vocab: usize,
}

impl<'a> LogitsView<'a> {
    /// `data.len()` must equal `rows · vocab`, with `rows ≥ 1` and `vocab ≥ 1`.
    pub fn new(data: &'a [f32], rows: usize, vocab: usize) -> Result<Self> {
        Self::check(Elems::F32(data), rows, vocab)
    }

    /// IEEE binary16 logits (e.g. a model's f16 output), `rows · vocab` of them.
    pub fn f16(data: &'a [f16], rows: usize, vocab: usize) -> Result<Self> {
        Self::check(Elems::F16(data), rows, vocab)
    }

    /// bfloat16 logits, `rows · vocab` of them.
    pub fn bf16(data: &'a [bf16], rows: usize, vocab: usize) -> Result<Self> {
        Self::check(Elems::Bf16(data), rows, vocab)
    }

    fn check(data: Elems<'a>, rows: usize, vocab: usize) -> Result<Self> {
        if rows == 0 || vocab == 0 {
            return Err(SamplerError::Shape(format!(
                "a batch needs at least one row and one token (got {rows} × {vocab})"
            )));
        }
        if rows.checked_mul(vocab) != Some(data.len()) {
            return Err(SamplerError::Shape(format!(
                "{} logits do not make {rows} rows of {vocab}",
                data.len()
            )));
        }
        Ok(LogitsView { data, rows, vocab })
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn vocab(&self) -> usize {
        self.vocab
    }

    pub fn dtype(&self) -> LogitsDtype {
        match self.data {
            Elems::F32(_) => LogitsDtype::F32,
            Elems::F16(_) => LogitsDtype::F16,
            Elems::Bf16(_) => LogitsDtype::Bf16,
        }
    }

    /// The f32 logits, when the view holds f32.
    pub fn as_f32(&self) -> Option<&'a [f32]> {
        match self.data {
            Elems::F32(d) => Some(d),
            _ => None,
        }
    }

    /// All logits as f32 (borrowed for f32, widened for f16 / bf16).
    pub fn to_f32(&self) -> Cow<'a, [f32]> {
        self.data.to_f32()
    }

    /// The elements' bytes as stored (little-endian on every supported host).
    pub fn bytes(&self) -> &'a [u8] {
        match self.data {
            Elems::F32(d) => u8_view(d),
            Elems::F16(d) => u8_view(d.reinterpret_cast()),
            Elems::Bf16(d) => u8_view(d.reinterpret_cast()),
        }
    }

    /// Row `r` as f32 (borrowed for f32, widened for f16 / bf16).
    pub fn row(&self, r: usize) -> Cow<'a, [f32]> {
        self.data
            .slice(r * self.vocab, (r + 1) * self.vocab)
            .to_f32()
    }

    /// Rows `start..end` as a view of their own.
    pub fn slice_rows(&self, start: usize, end: usize) -> LogitsView<'a> {
        LogitsView {
            data: self.data.slice(start * self.vocab, end * self.vocab),
            rows: end - start,
            vocab: self.vocab,
        }
    }
}

/// The bytes of a slice of plain numbers.
fn u8_view<T: Copy>(d: &[T]) -> &[u8] {
    // SAFETY: f32 and u16 have no padding and every byte pattern is a valid
    // u8; the length covers exactly the slice's bytes.
    unsafe { std::slice::from_raw_parts(d.as_ptr().cast::<u8>(), std::mem::size_of_val(d)) }
}

/// Owned B × V logits.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    data: Vec<f32>,
    rows: usize,
    vocab: usize,
}

impl Batch {
    pub fn new(data: Vec<f32>, rows: usize, vocab: usize) -> Result<Self> {
        LogitsView::new(&data, rows, vocab)?;
        Ok(Batch { data, rows, vocab })
    }

    /// One batch from equal-length rows; a ragged row is an error naming it.
    pub fn from_rows<R: AsRef<[f32]>>(rows: &[R]) -> Result<Self> {
        let vocab = rows.first().map(|r| r.as_ref().len()).unwrap_or(0);
        let mut data = Vec::with_capacity(rows.len() * vocab);
        for (i, r) in rows.iter().enumerate() {
            let r = r.as_ref();
            if r.len() != vocab {
                return Err(SamplerError::Shape(format!(
                    "row {i} has {} logits but row 0 has {vocab}",
                    r.len()
                )));
            }
            data.extend_from_slice(r);
        }
        Batch::new(data, rows.len(), vocab)
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn vocab(&self) -> usize {
        self.vocab
    }

    pub fn data(&self) -> &[f32] {
        &self.data
    }

    pub fn into_data(self) -> Vec<f32> {
        self.data
    }

    pub fn row(&self, r: usize) -> &[f32] {
        &self.data[r * self.vocab..(r + 1) * self.vocab]
    }

    pub fn view(&self) -> LogitsView<'_> {
        LogitsView {
            data: Elems::F32(&self.data),
            rows: self.rows,
            vocab: self.vocab,
        }
    }

    /// Loads `.npy` or `.json` by extension, or a raw file when `raw` gives the
    /// dtype and vocab size.
    pub fn load(path: &Path, raw: Option<(RawDtype, usize)>) -> Result<Self> {
        if let Some((dtype, vocab)) = raw {
            let bytes = read(path)?;
            return load_raw(path, &bytes, dtype, vocab);
        }
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(|e| e.to_ascii_lowercase());
        match ext.as_deref() {
            Some("npy") => load_npy(path, &read(path)?),
            Some("json") => {
                let bytes = read(path)?;
                let text = std::str::from_utf8(&bytes).map_err(|e| SamplerError::Load {
                    path: path.to_path_buf(),
                    message: format!("not UTF-8: {e}"),
                })?;
                load_json(path, text)
            }
            _ => Err(SamplerError::Load {
                path: path.to_path_buf(),
                message: "unknown logits format: use .npy or .json, or give --dtype and --vocab for a raw file".into(),
            }),
        }
    }

    /// Saves as a little-endian f32 `.npy` of shape [B, V].
    pub fn save_npy(&self, path: &Path) -> Result<()> {
        let io = |e: std::io::Error| SamplerError::Load {
            path: path.to_path_buf(),
            message: e.to_string(),
        };
        let file = std::fs::File::create(path).map_err(io)?;
        let mut writer = npyz::WriteOptions::new()
            .default_dtype()
            .shape(&[self.rows as u64, self.vocab as u64])
            .writer(std::io::BufWriter::new(file))
            .begin_nd()
            .map_err(io)?;
        writer.extend(self.data.iter().copied()).map_err(io)?;
        writer.finish().map_err(io)?;
        Ok(())
    }
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| SamplerError::Load {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

/// Rejects NaN and +inf, naming row and index.
fn check_values(path: &Path, data: &[f32], vocab: usize) -> Result<()> {
    match data.iter().position(|v| v.is_nan() || *v == f32::INFINITY) {
        Some(i) => Err(SamplerError::LoadValue {
            path: path.to_path_buf(),
            row: i / vocab,
            index: i % vocab,
            message: format!(
                "logit is {}; only finite values and -inf are allowed",
                data[i]
            ),
        }),
        None => Ok(()),
    }
}

fn finish(path: &Path, data: Vec<f32>, rows: usize, vocab: usize) -> Result<Batch> {
    if vocab == 0 || rows == 0 {
        return Err(SamplerError::Load {
            path: path.to_path_buf(),
            message: format!("empty logits ({rows} rows × {vocab} tokens)"),
        });
    }
    check_values(path, &data, vocab)?;
    Batch::new(data, rows, vocab)
}

/// Raw little-endian rows of `vocab` values.
pub fn load_raw(path: &Path, bytes: &[u8], dtype: RawDtype, vocab: usize) -> Result<Batch> {
    let err = |message: String| SamplerError::Load {
        path: path.to_path_buf(),
        message,
    };
    if vocab == 0 {
        return Err(err("--vocab must be at least 1".into()));
    }
    let Some(row_bytes) = vocab.checked_mul(dtype.size()) else {
        return Err(err(format!(
            "--vocab {vocab}: a row of {vocab} {} values needs more bytes than a 64-bit size holds",
            dtype.name()
        )));
    };
    if bytes.is_empty() {
        return Err(err("the file is empty".into()));
    }
    if !bytes.len().is_multiple_of(row_bytes) {
        return Err(err(format!(
            "{} bytes is not a whole number of rows of {vocab} {dtype:?} values ({row_bytes} bytes each): truncated file or wrong --vocab/--dtype",
            bytes.len()
        )));
    }
    let data: Vec<f32> = match dtype {
        RawDtype::F32 => bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        RawDtype::F16 => bytes
            .chunks_exact(2)
            .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        RawDtype::Bf16 => bytes
            .chunks_exact(2)
            .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
    };
    let rows = bytes.len() / row_bytes;
    finish(path, data, rows, vocab)
}

/// `.npy`, f32 or f16, shape [B, V] or [V], C order.
pub fn load_npy(path: &Path, bytes: &[u8]) -> Result<Batch> {
    let err = |message: String| SamplerError::Load {
        path: path.to_path_buf(),
        message,
    };
    // The shape's element count, checked before the reader multiplies it out
    // (unchecked), so a header whose product overflows is a clear error.
    if let Some(dims) = npy_header_shape(bytes) {
        let count = dims.iter().try_fold(1u64, |n, &d| n.checked_mul(d));
        if count.is_none_or(|n| n > (bytes.len() as u64)) {
            return Err(err(format!(
                "shape {dims:?} claims {} values but the file holds {} bytes: a corrupt header",
                count.map_or("more than 2^64".to_string(), |n| n.to_string()),
                bytes.len()
            )));
        }
    }
    let npy = npyz::NpyFile::new(bytes).map_err(|e| err(format!("not a valid .npy file: {e}")))?;
    if npy.order() != npyz::Order::C {
        return Err(err(
            "Fortran-order arrays are not supported; save in C order".into(),
        ));
    }
    let shape = npy.shape().to_vec();
    let (rows, vocab) = match shape.as_slice() {
        [v] => (1usize, *v as usize),
        [b, v] => (*b as usize, *v as usize),
        other => return Err(err(format!("shape {other:?}: expected [B, V] or [V]"))),
    };
    let type_str = match npy.dtype() {
        npyz::DType::Plain(ts) => ts,
        other => return Err(err(format!("unsupported dtype {}", other.descr()))),
    };
    let data: Vec<f32> = match (type_str.type_char(), type_str.size_field()) {
        (npyz::TypeChar::Float, 4) => npy
            .into_vec::<f32>()
            .map_err(|e| err(format!("cannot read f32 data (truncated file?): {e}")))?,
        (npyz::TypeChar::Float, 2) => npy
            .into_vec::<half::f16>()
            .map_err(|e| err(format!("cannot read f16 data (truncated file?): {e}")))?
            .into_iter()
            .map(|h| h.to_f32())
            .collect(),
        _ => {
            return Err(err(format!(
                "dtype {type_str} is not supported: use float32 or float16"
            )))
        }
    };
    if Some(data.len()) != rows.checked_mul(vocab) {
        return Err(err(format!(
            "{} values for shape {shape:?} (truncated file?)",
            data.len()
        )));
    }
    finish(path, data, rows, vocab)
}

/// The `'shape': (…)` tuple of an `.npy` header, if it can be found and read
/// (anything else is left to the full parser's messages).
fn npy_header_shape(bytes: &[u8]) -> Option<Vec<u64>> {
    let header = &bytes[..bytes.len().min(1 << 16)];
    let key = header.windows(7).position(|w| w == b"'shape'")?;
    let rest = &header[key + 7..];
    let open = rest.iter().position(|&b| b == b'(')?;
    let close = rest[open..].iter().position(|&b| b == b')')? + open;
    let tuple = std::str::from_utf8(&rest[open + 1..close]).ok()?;
    tuple
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|t| t.trim_end_matches('L').parse::<u64>().ok())
        .collect()
}

/// `.json`: `[[…], …]` (B rows) or `[…]` (one row) of numbers; `-Infinity` is
/// accepted for masked tokens, `NaN` and `Infinity` are rejected with their
/// row and index. serde_json cannot read `-Infinity`, so this small scanner
/// does the job (and reads large files without building a DOM).
pub fn load_json(path: &Path, text: &str) -> Result<Batch> {
    let mut s = JsonScanner {
        path,
        bytes: text.as_bytes(),
        pos: 0,
        row: 0,
        index: 0,
    };
    s.skip_ws();
    s.expect(b'[')?;
    s.skip_ws();
    let nested = s.peek() == Some(b'[');
    let mut data = Vec::new();
    let mut vocab = None;
    let mut rows = 0;
    if nested {
        loop {
            s.skip_ws();
            s.row = rows;
            let before = data.len();
            s.read_row(&mut data)?;
            let len = data.len() - before;
            match vocab {
                None => vocab = Some(len),
                Some(v) if v != len => {
                    return Err(SamplerError::LoadValue {
                        path: path.to_path_buf(),
                        row: rows,
                        index: len.min(v),
                        message: format!("ragged rows: this row has {len} logits, row 0 has {v}"),
                    })
                }
                _ => {}
            }
            rows += 1;
            s.skip_ws();
            match s.next() {
                Some(b',') => continue,
                Some(b']') => break,
                _ => return Err(s.error("expected `,` or `]` after a row")),
            }
        }
    } else {
        s.pos -= 1; // re-read the opening bracket as the row's
        s.read_row(&mut data)?;
        vocab = Some(data.len());
        rows = 1;
    }
    s.skip_ws();
    if s.pos != s.bytes.len() {
        return Err(s.error("trailing characters after the array"));
    }
    finish(path, data, rows, vocab.unwrap_or(0))
}

struct JsonScanner<'a> {
    path: &'a Path,
    bytes: &'a [u8],
    pos: usize,
    row: usize,
    index: usize,
}

impl JsonScanner<'_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let b = self.peek();
        self.pos += b.is_some() as usize;
        b
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\n' | b'\r' | b'\t')) {
            self.pos += 1;
        }
    }

    fn error(&self, message: &str) -> SamplerError {
        let line = 1 + self.bytes[..self.pos.min(self.bytes.len())]
            .iter()
            .filter(|&&b| b == b'\n')
            .count();
        SamplerError::Load {
            path: PathBuf::from(self.path),
            message: format!(
                "invalid logits JSON at line {line}, byte {}: {message}",
                self.pos
            ),
        }
    }

    fn value_error(&self, message: String) -> SamplerError {
        SamplerError::LoadValue {
            path: PathBuf::from(self.path),
            row: self.row,
            index: self.index,
            message,
        }
    }

    fn expect(&mut self, b: u8) -> Result<()> {
        if self.next() == Some(b) {
            Ok(())
        } else {
            Err(self.error(&format!("expected `{}`", b as char)))
        }
    }

    fn read_row(&mut self, out: &mut Vec<f32>) -> Result<()> {
        self.expect(b'[')?;
        self.index = 0;
        self.skip_ws();
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(());
        }
        loop {
            self.skip_ws();
            let v = self.read_number()?;
            out.push(v);
            self.index += 1;
            self.skip_ws();
            match self.next() {
                Some(b',') => continue,
                Some(b']') => return Ok(()),
                _ => return Err(self.error("expected `,` or `]` after a number")),
            }
        }
    }

    fn read_number(&mut self) -> Result<f32> {
        let start = self.pos;
        while matches!(
            self.peek(),
            Some(b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E' | b'a'..=b'z' | b'A'..=b'Z')
        ) {
            self.pos += 1;
        }
        let tok = std::str::from_utf8(&self.bytes[start..self.pos]).unwrap_or("");
        match tok {
            "-Infinity" => return Ok(f32::NEG_INFINITY),
            "NaN" | "nan" => return Err(self.value_error("NaN is not a valid logit".into())),
            "Infinity" | "+Infinity" | "inf" => {
                return Err(self.value_error(
                    "+Infinity is not a valid logit (only -Infinity, a masked token)".into(),
                ))
            }
            "" => return Err(self.error("expected a number")),
            _ => {}
        }
        let is_json_number = tok
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E'));
        if !is_json_number {
            return Err(self.value_error(format!("`{tok}` is not a number")));
        }
        let v: f32 = tok
            .parse()
            .map_err(|_| self.value_error(format!("`{tok}` is not a number")))?;
        if v.is_infinite() {
            return Err(self.value_error(format!("{tok} overflows f32")));
        }
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p() -> &'static Path {
        Path::new("t.json")
    }

    #[test]
    fn json_nested_flat_and_neg_infinity() {
        let b = load_json(p(), "[[1, -Infinity, 2.5e0], [0,0,-1]]").unwrap();
        assert_eq!((b.rows(), b.vocab()), (2, 3));
        assert_eq!(b.row(0)[1], f32::NEG_INFINITY);
        assert_eq!(b.row(1), &[0.0, 0.0, -1.0]);
        let b = load_json(p(), " [1,2,3] ").unwrap();
        assert_eq!((b.rows(), b.vocab()), (1, 3));
    }

    #[test]
    fn json_errors_name_row_and_index() {
        let e = load_json(p(), "[[1,2],[3,NaN]]").unwrap_err().to_string();
        assert!(e.contains("row 1, index 1") && e.contains("NaN"), "{e}");
        let e = load_json(p(), "[[1,2],[3,Infinity]]")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("row 1, index 1") && e.contains("Infinity"),
            "{e}"
        );
        let e = load_json(p(), "[[1,2],[3]]").unwrap_err().to_string();
        assert!(e.contains("ragged") && e.contains("row 1"), "{e}");
        assert!(load_json(p(), "[]")
            .unwrap_err()
            .to_string()
            .contains("empty"));
        assert!(load_json(p(), "[[1,2]").is_err());
        assert!(load_json(p(), "[1e40]")
            .unwrap_err()
            .to_string()
            .contains("overflows"));
        assert!(load_json(p(), "[1,2] x").is_err());
    }

    #[test]
    fn raw_dtypes_and_truncation() {
        let vals = [1.5f32, -2.0, 0.25, f32::NEG_INFINITY];
        let f32b: Vec<u8> = vals.iter().flat_map(|v| v.to_le_bytes()).collect();
        let b = load_raw(p(), &f32b, RawDtype::F32, 2).unwrap();
        assert_eq!((b.rows(), b.vocab()), (2, 2));
        assert_eq!(b.data(), &vals);
        let f16b: Vec<u8> = vals
            .iter()
            .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
            .collect();
        assert_eq!(
            load_raw(p(), &f16b, RawDtype::F16, 4).unwrap().data(),
            &vals
        );
        let bf16b: Vec<u8> = vals
            .iter()
            .flat_map(|v| half::bf16::from_f32(*v).to_le_bytes())
            .collect();
        assert_eq!(
            load_raw(p(), &bf16b, RawDtype::Bf16, 4).unwrap().data(),
            &vals
        );
        let e = load_raw(p(), &f32b[..15], RawDtype::F32, 2)
            .unwrap_err()
            .to_string();
        assert!(e.contains("truncated"), "{e}");
        let nan: Vec<u8> = [0.0f32, f32::NAN]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let e = load_raw(p(), &nan, RawDtype::F32, 1)
            .unwrap_err()
            .to_string();
        assert!(e.contains("row 1, index 0"), "{e}");
    }

    #[test]
    fn npy_round_trip_and_f16() {
        let dir = std::env::temp_dir().join(format!("ts-npy-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("b.npy");
        let b = Batch::new(vec![1.0, 2.0, f32::NEG_INFINITY, -4.0, 5.0, 6.0], 2, 3).unwrap();
        b.save_npy(&path).unwrap();
        assert_eq!(Batch::load(&path, None).unwrap(), b);
        // f16, shape [V]
        let path16 = dir.join("h.npy");
        let vals = [0.5f32, -1.0, 2.0];
        let f = std::fs::File::create(&path16).unwrap();
        let mut w = npyz::WriteOptions::new()
            .default_dtype()
            .shape(&[3])
            .writer(f)
            .begin_nd()
            .unwrap();
        w.extend(vals.iter().map(|v| half::f16::from_f32(*v)))
            .unwrap();
        w.finish().unwrap();
        let h = Batch::load(&path16, None).unwrap();
        assert_eq!((h.rows(), h.vocab()), (1, 3));
        assert_eq!(h.data(), &vals);
        // truncated
        let bytes = std::fs::read(&path).unwrap();
        let e = load_npy(&path, &bytes[..bytes.len() - 3])
            .unwrap_err()
            .to_string();
        assert!(e.contains("truncated") || e.contains("valid"), "{e}");
        std::fs::remove_dir_all(&dir).ok();
    }
}
