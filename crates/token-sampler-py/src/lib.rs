//! Python bindings of `token_sampler` (PyO3 + rust-numpy; built into a wheel
//! by maturin, module `token_sampler`).
//!
//! The boundary rules, each from docs/spec.md:
//! - logits come in as a NumPy array `[B, V]` or `[V]` of float32, float16 or
//!   bfloat16, read in place (a read-only borrow, no copy) when C-contiguous;
//! - parameters are dicts with exactly the JSON names of the CLI's `--params`
//!   (docs/spec.md §2): one for every row, or a list of B;
//! - the interpreter lock is released while the backend works, so other
//!   Python threads (a tokenizer, a model) run meanwhile (docs/spec.md §13.3);
//! - every `SamplerError` becomes a Python exception that names the row and
//!   the field or index (docs/spec.md §13.4); a panic becomes pyo3's
//!   `PanicException`, never an abort.

use std::sync::Mutex;

use numpy::{
    dtype, PyArray1, PyArrayDescrMethods, PyArrayMethods, PyReadonlyArrayDyn, PyUntypedArray,
    PyUntypedArrayMethods,
};
use pyo3::exceptions::{PyException, PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple, PyType};
use serde_json::Value;

use token_sampler::params::widen;
use token_sampler::{BackendKind, LogitsView, RowProbs, RowResult, SamplerError, SamplingParams};

// ---------------------------------------------------------------- errors

pyo3::create_exception!(
    token_sampler,
    SamplerException,
    PyException,
    "Base class of every error token_sampler raises; `kind`, `row`, `field` and `index` say what and where (None where they do not apply)."
);

/// `InvalidInputError(SamplerError, ValueError)`, `BackendUnavailableError(SamplerError,
/// RuntimeError)` and `DeviceError(SamplerError, RuntimeError)`: built with
/// `type()` because two bases cannot be given to `create_exception!`, so a
/// caller can catch the builtin class (`ValueError`) or ours.
static INVALID_INPUT: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static BACKEND_UNAVAILABLE: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static DEVICE_ERROR: PyOnceLock<Py<PyType>> = PyOnceLock::new();

fn exception_type<'py>(
    py: Python<'py>,
    cell: &'static PyOnceLock<Py<PyType>>,
    name: &str,
    builtin: Bound<'py, PyType>,
    doc: &str,
) -> PyResult<Bound<'py, PyType>> {
    let ty = cell.get_or_try_init(py, || -> PyResult<Py<PyType>> {
        let namespace = PyDict::new(py);
        namespace.set_item("__module__", "token_sampler")?;
        namespace.set_item("__doc__", doc)?;
        let bases = PyTuple::new(py, [py.get_type::<SamplerException>(), builtin])?;
        let made = py
            .get_type::<PyType>()
            .call1((name, bases, namespace))?
            .cast_into::<PyType>()?;
        Ok(made.unbind())
    })?;
    Ok(ty.bind(py).clone())
}

fn invalid_input_type(py: Python<'_>) -> PyResult<Bound<'_, PyType>> {
    exception_type(
        py,
        &INVALID_INPUT,
        "InvalidInputError",
        py.get_type::<PyValueError>(),
        "Bad input: a parameter, a logit, a token id, a shape or a call argument. \
         The message (and `row`, `field`, `index`) names where.",
    )
}

fn backend_unavailable_type(py: Python<'_>) -> PyResult<Bound<'_, PyType>> {
    exception_type(
        py,
        &BACKEND_UNAVAILABLE,
        "BackendUnavailableError",
        py.get_type::<PyRuntimeError>(),
        "The backend asked for is not in this build or cannot run here.",
    )
}

fn device_error_type(py: Python<'_>) -> PyResult<Bound<'_, PyType>> {
    exception_type(
        py,
        &DEVICE_ERROR,
        "DeviceError",
        py.get_type::<PyRuntimeError>(),
        "A failure inside the GPU backend (device lost, mapping failed, ...).",
    )
}

/// Where an error points: the variant's snake-case name, and row / field /
/// index where it has them (docs/spec.md §13.4).
struct Location {
    kind: &'static str,
    row: Option<usize>,
    field: Option<String>,
    index: Option<usize>,
}

fn locate(e: &SamplerError) -> Location {
    let at = |kind, row, field: Option<&str>, index| Location {
        kind,
        row,
        field: field.map(str::to_string),
        index,
    };
    match e {
        SamplerError::InvalidParam { row, field, .. } => {
            at("invalid_param", Some(*row), Some(field), None)
        }
        SamplerError::ParamsParse { row, .. } => at("params_parse", Some(*row), None, None),
        SamplerError::TokenOutOfRange {
            row,
            field,
            position,
            ..
        } => at(
            "token_out_of_range",
            Some(*row),
            Some(field),
            Some(*position),
        ),
        SamplerError::InvalidLogit { row, index, .. } => {
            at("invalid_logit", Some(*row), None, Some(*index))
        }
        SamplerError::NonFiniteLogit {
            row, index, field, ..
        } => at("non_finite_logit", Some(*row), Some(field), Some(*index)),
        SamplerError::AllMasked { row } => at("all_masked", Some(*row), None, None),
        SamplerError::Shape(_) => at("shape", None, None, None),
        SamplerError::Load { .. } => at("load", None, None, None),
        SamplerError::LoadValue { row, index, .. } => {
            at("load_value", Some(*row), None, Some(*index))
        }
        SamplerError::BackendUnavailable { .. } => at("backend_unavailable", None, None, None),
        SamplerError::UnknownPreset { .. } => at("unknown_preset", None, None, None),
        SamplerError::Gpu(_) => at("gpu", None, None, None),
        SamplerError::DeviceLost { .. } => at("device_lost", None, None, None),
        SamplerError::DeviceTimeout { .. } => at("device_timeout", None, None, None),
        SamplerError::Unsupported(_) => at("unsupported", None, None, None),
        // A variant added to the library later still reaches Python, as the
        // base class.
        #[allow(unreachable_patterns)]
        _ => at("other", None, None, None),
    }
}

/// The Python exception for a library error: `InvalidInputError` (a
/// `ValueError`) for anything the caller passed, `BackendUnavailableError` or
/// `DeviceError` (both `RuntimeError`s) for the machine.
fn to_py_err(py: Python<'_>, e: SamplerError) -> PyErr {
    let loc = locate(&e);
    let ty = match loc.kind {
        "backend_unavailable" => backend_unavailable_type(py),
        "gpu" | "device_lost" | "device_timeout" => device_error_type(py),
        "other" => Ok(py.get_type::<SamplerException>()),
        _ => invalid_input_type(py),
    };
    let ty = match ty {
        Ok(ty) => ty,
        Err(err) => return err,
    };
    let err = PyErr::from_type(ty, e.to_string());
    let value = err.value(py);
    // Attribute writes on a fresh exception instance cannot fail in practice;
    // if one did, the message still names row and field.
    let _ = value.setattr("kind", loc.kind);
    let _ = value.setattr("row", loc.row);
    let _ = value.setattr("field", loc.field);
    let _ = value.setattr("index", loc.index);
    err
}

// ---------------------------------------------------------------- parameters

/// A Python parameter value as JSON, so that `SamplingParams`' own serde
/// names, defaults and unknown-field errors apply (the CLI's `--params` rules,
/// docs/spec.md §2). `path` is the field being converted, for errors.
fn to_json(row: usize, path: &str, obj: &Bound<'_, PyAny>) -> Result<Value, SamplerError> {
    let bad = |message: String| SamplerError::InvalidParam {
        row,
        field: path.to_string(),
        message,
    };
    if obj.is_none() {
        return Ok(Value::Null);
    }
    if let Ok(b) = obj.cast::<PyBool>() {
        return Ok(Value::Bool(b.is_true()));
    }
    if obj.is_instance_of::<PyInt>() {
        if let Ok(i) = obj.extract::<i64>() {
            return Ok(Value::from(i));
        }
        if let Ok(u) = obj.extract::<u64>() {
            return Ok(Value::from(u));
        }
        return Err(bad(format!("{obj} does not fit in 64 bits")));
    }
    if obj.is_instance_of::<PyFloat>() {
        let f: f64 = obj.extract().map_err(|e: PyErr| bad(e.to_string()))?;
        return serde_json::Number::from_f64(f)
            .map(Value::Number)
            .ok_or_else(|| bad(format!("{f} (parameters are finite numbers)")));
    }
    if let Ok(s) = obj.cast::<PyString>() {
        return Ok(Value::String(s.to_string()));
    }
    if let Ok(d) = obj.cast::<PyDict>() {
        let mut map = serde_json::Map::new();
        for (k, v) in d.iter() {
            // `logit_bias` keys are decimal token ids in JSON; Python callers
            // naturally write ints.
            let key = if k.is_instance_of::<PyInt>() && !k.is_instance_of::<PyBool>() {
                k.str().map_err(|e| bad(e.to_string()))?.to_string()
            } else if let Ok(s) = k.cast::<PyString>() {
                s.to_string()
            } else {
                return Err(bad(format!("key {k} is neither a string nor an int")));
            };
            let child = if path.is_empty() {
                key.clone()
            } else {
                format!("{path}.{key}")
            };
            map.insert(key, to_json(row, &child, &v)?);
        }
        return Ok(Value::Object(map));
    }
    if obj.is_instance_of::<PyList>() || obj.is_instance_of::<PyTuple>() {
        let mut items = Vec::new();
        for (i, item) in obj.try_iter().map_err(|e| bad(e.to_string()))?.enumerate() {
            let item = item.map_err(|e| bad(e.to_string()))?;
            items.push(to_json(row, &format!("{path}[{i}]"), &item)?);
        }
        return Ok(Value::Array(items));
    }
    // NumPy arrays and scalars (token ids kept in an ndarray, np.float32 values):
    // their Python equivalent.
    if obj.hasattr("tolist").unwrap_or(false) {
        let plain = obj.call_method0("tolist").map_err(|e| bad(e.to_string()))?;
        if !plain.is(obj) {
            return to_json(row, path, &plain);
        }
    }
    let type_name = obj
        .get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "?".into());
    Err(bad(format!(
        "a value of type {type_name} is not a parameter value"
    )))
}

/// One row's dict as `SamplingParams`. Type errors name the field (its path
/// inside the object) as well as the row.
fn parse_params(row: usize, obj: &Bound<'_, PyAny>) -> Result<SamplingParams, SamplerError> {
    if !obj.is_instance_of::<PyDict>() {
        let type_name = obj
            .get_type()
            .name()
            .map(|n| n.to_string())
            .unwrap_or_else(|_| "?".into());
        return Err(SamplerError::ParamsParse {
            row,
            message: format!("expected a dict of parameters, got {type_name}"),
        });
    }
    let value = to_json(row, "", obj)?;
    serde_path_to_error::deserialize::<_, SamplingParams>(value).map_err(|e| {
        // serde_path_to_error writes an unreadable map key as `?`
        // (`logit_bias.?`): name the field that holds it.
        let path = e
            .path()
            .to_string()
            .split('.')
            .filter(|s| *s != "?")
            .collect::<Vec<_>>()
            .join(".");
        let message = e.into_inner().to_string();
        if path.is_empty() {
            SamplerError::ParamsParse { row, message }
        } else {
            SamplerError::InvalidParam {
                row,
                field: path,
                message,
            }
        }
    })
}

/// `None` (defaults for every row), one dict for every row, or a sequence of
/// exactly `rows` dicts.
fn params_arg(
    params: Option<&Bound<'_, PyAny>>,
    rows: usize,
) -> Result<Vec<SamplingParams>, SamplerError> {
    let Some(params) = params.filter(|p| !p.is_none()) else {
        return Ok(vec![SamplingParams::default(); rows]);
    };
    if params.is_instance_of::<PyDict>() {
        let one = parse_params(0, params)?;
        return Ok(vec![one; rows]);
    }
    if params.is_instance_of::<PyList>() || params.is_instance_of::<PyTuple>() {
        let list: Vec<Bound<'_, PyAny>> = params
            .try_iter()
            .and_then(|it| it.collect::<PyResult<Vec<_>>>())
            .map_err(|e| SamplerError::ParamsParse {
                row: 0,
                message: e.to_string(),
            })?;
        if list.len() != rows {
            return Err(SamplerError::Shape(format!(
                "{} parameter dicts for {rows} rows (give one dict for every row, or one per row)",
                list.len()
            )));
        }
        return list
            .iter()
            .enumerate()
            .map(|(row, p)| parse_params(row, p))
            .collect();
    }
    Err(SamplerError::ParamsParse {
        row: 0,
        message: "params must be a dict, a list of dicts or None".into(),
    })
}

// ---------------------------------------------------------------- logits

/// The caller's array, borrowed read-only for the duration of the call.
enum Logits<'py> {
    F32(PyReadonlyArrayDyn<'py, f32>),
    F16(PyReadonlyArrayDyn<'py, half::f16>),
    Bf16(PyReadonlyArrayDyn<'py, half::bf16>),
}

/// A contiguous slice of the caller's array, which may cross into the
/// detached section (plain data, no Python object).
#[derive(Clone, Copy)]
enum Slice<'a> {
    F32(&'a [f32]),
    F16(&'a [half::f16]),
    Bf16(&'a [half::bf16]),
}

impl Slice<'_> {
    fn view(&self, rows: usize, vocab: usize) -> Result<LogitsView<'_>, SamplerError> {
        match *self {
            Slice::F32(d) => LogitsView::new(d, rows, vocab),
            Slice::F16(d) => LogitsView::f16(d, rows, vocab),
            Slice::Bf16(d) => LogitsView::bf16(d, rows, vocab),
        }
    }
}

struct LogitsArg<'py> {
    array: Logits<'py>,
    rows: usize,
    vocab: usize,
}

impl<'py> LogitsArg<'py> {
    fn extract(py: Python<'py>, obj: &Bound<'py, PyAny>) -> PyResult<Self> {
        let Ok(untyped) = obj.cast::<PyUntypedArray>() else {
            let type_name = obj.get_type().name()?.to_string();
            return Err(PyTypeError::new_err(format!(
                "logits must be a NumPy array of float32, float16 or bfloat16, shape [B, V] or [V]; \
                 got {type_name} (np.asarray(x, dtype=np.float32) makes one)"
            )));
        };
        let (rows, vocab) = match *untyped.shape() {
            [v] => (1, v),
            [b, v] => (b, v),
            ref other => {
                return Err(to_py_err(
                    py,
                    SamplerError::Shape(format!(
                        "logits of shape {other:?}: expected [B, V] or [V]"
                    )),
                ))
            }
        };
        // A strided view (a column slice, a transposed array) is copied once
        // into C order; a contiguous array is read where it is.
        let owned;
        let untyped = if untyped.is_c_contiguous() {
            untyped.clone()
        } else {
            owned = py
                .import("numpy")?
                .call_method1("ascontiguousarray", (untyped,))?;
            owned.cast_into::<PyUntypedArray>()?
        };
        let descr = untyped.dtype();
        let array = if descr.is_equiv_to(&dtype::<f32>(py)) {
            Logits::F32(untyped.cast::<numpy::PyArrayDyn<f32>>()?.try_readonly()?)
        } else if descr.is_equiv_to(&dtype::<half::f16>(py)) {
            Logits::F16(
                untyped
                    .cast::<numpy::PyArrayDyn<half::f16>>()?
                    .try_readonly()?,
            )
        } else if descr.str()?.to_string().contains("bfloat16") {
            // Only asked for when the array already is bfloat16, so the
            // ml_dtypes package that registers the type is loaded.
            Logits::Bf16(
                untyped
                    .cast::<numpy::PyArrayDyn<half::bf16>>()?
                    .try_readonly()?,
            )
        } else {
            return Err(PyTypeError::new_err(format!(
                "logits of dtype {}: expected float32, float16 or bfloat16 (arr.astype(np.float32) converts)",
                descr.str()?
            )));
        };
        Ok(LogitsArg { array, rows, vocab })
    }

    fn slice(&self) -> PyResult<Slice<'_>> {
        let not_contiguous = |e: numpy::AsSliceError| PyValueError::new_err(e.to_string());
        Ok(match &self.array {
            Logits::F32(a) => Slice::F32(a.as_slice().map_err(not_contiguous)?),
            Logits::F16(a) => Slice::F16(a.as_slice().map_err(not_contiguous)?),
            Logits::Bf16(a) => Slice::Bf16(a.as_slice().map_err(not_contiguous)?),
        })
    }
}

// ---------------------------------------------------------------- sampler

/// A sampler over one backend. Create it once and reuse it: it keeps its
/// worker threads and scratch (`cpu`) or its device, pipelines and buffers
/// (`gpu`) between calls (docs/spec.md §13.3).
///
/// `backend` is `"auto"` (the GPU on a hardware adapter, else `cpu`),
/// `"reference"`, `"cpu"` or `"gpu"` (a software adapter such as lavapipe
/// is accepted when named explicitly).
///
/// Thread safety: a `Sampler` may be shared between threads. Calls on one
/// sampler run one at a time (an internal lock, waited for without the
/// interpreter lock); for parallel batches, create one sampler per thread.
#[pyclass(module = "token_sampler", name = "Sampler", frozen)]
struct PySampler {
    inner: Mutex<Box<dyn token_sampler::Sampler>>,
    kind: BackendKind,
    device: String,
}

impl PySampler {
    fn run<T>(
        &self,
        f: impl FnOnce(&mut dyn token_sampler::Sampler) -> Result<T, SamplerError>,
    ) -> Result<T, SamplerError> {
        let mut guard = self.inner.lock().map_err(|_| {
            SamplerError::Gpu(
                "an earlier call on this sampler panicked; create a new Sampler".into(),
            )
        })?;
        f(guard.as_mut())
    }
}

#[pymethods]
impl PySampler {
    #[new]
    #[pyo3(signature = (backend = "auto"))]
    fn new(py: Python<'_>, backend: &str) -> PyResult<Self> {
        let kind = match backend {
            "auto" => None,
            other => Some(other.parse::<BackendKind>().map_err(|message| {
                let err = invalid_input_type(py).map(|ty| PyErr::from_type(ty, message.clone()));
                err.unwrap_or_else(|e| e)
            })?),
        };
        // Acquiring a GPU can take a while: other threads run meanwhile.
        let sampler = py
            .detach(|| match kind {
                Some(kind) => token_sampler::open(kind, true),
                None => token_sampler::open_default().map(|(s, _why)| s),
            })
            .map_err(|e| to_py_err(py, e))?;
        Ok(PySampler {
            kind: sampler.kind(),
            device: sampler.device(),
            inner: Mutex::new(sampler),
        })
    }

    /// The backend in use: "reference", "cpu" or "gpu".
    #[getter]
    fn backend(&self) -> &'static str {
        self.kind.name()
    }

    /// The device the backend runs on, in words.
    #[getter]
    fn device(&self) -> String {
        self.device.clone()
    }

    /// Samples `samples` draws per row (docs/spec.md §3, §5, §6).
    ///
    /// `logits`: NumPy float32 / float16 / bfloat16, shape [B, V] or [V]
    /// (one row), read in place when C-contiguous. `params`: one dict for every
    /// row, a list of B dicts, or None (defaults: plain softmax sampling at
    /// T = 1); the keys are the CLI's JSON names. Returns a `SampleResult`.
    #[pyo3(signature = (logits, params = None, samples = 1))]
    fn sample(
        &self,
        py: Python<'_>,
        logits: &Bound<'_, PyAny>,
        params: Option<&Bound<'_, PyAny>>,
        samples: u32,
    ) -> PyResult<SampleResult> {
        let arg = LogitsArg::extract(py, logits)?;
        let params = params_arg(params, arg.rows).map_err(|e| to_py_err(py, e))?;
        let slice = arg.slice()?;
        let (rows, vocab) = (arg.rows, arg.vocab);
        let results = py
            .detach(|| {
                let view = slice.view(rows, vocab)?;
                self.run(|s| s.sample(view, &params, samples))
            })
            .map_err(|e| to_py_err(py, e))?;
        SampleResult::new(py, results, samples, self.kind)
    }

    /// The processed distribution π of every row (docs/spec.md §3): a
    /// `ProbsResult` whose `probs` is float64 [B, V] in token-id order.
    #[pyo3(signature = (logits, params = None))]
    fn probs(
        &self,
        py: Python<'_>,
        logits: &Bound<'_, PyAny>,
        params: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<ProbsResult> {
        let arg = LogitsArg::extract(py, logits)?;
        let params = params_arg(params, arg.rows).map_err(|e| to_py_err(py, e))?;
        let slice = arg.slice()?;
        let (rows, vocab) = (arg.rows, arg.vocab);
        let (results, flat) = py
            .detach(|| {
                let view = slice.view(rows, vocab)?;
                let results = self.run(|s| s.probs(view, &params))?;
                let mut flat = Vec::with_capacity(rows * vocab);
                for r in &results {
                    flat.extend_from_slice(&r.probs);
                }
                Ok::<_, SamplerError>((results, flat))
            })
            .map_err(|e| to_py_err(py, e))?;
        ProbsResult::new(py, results, flat, rows, vocab, self.kind)
    }

    fn __repr__(&self) -> String {
        format!(
            "Sampler(backend={:?}, device={:?})",
            self.kind.name(),
            self.device
        )
    }
}

// ---------------------------------------------------------------- results

fn array1<T: numpy::Element>(py: Python<'_>, v: Vec<T>) -> Py<PyAny> {
    PyArray1::from_vec(py, v).into_any().unbind()
}

fn array2<T: numpy::Element>(
    py: Python<'_>,
    v: Vec<T>,
    rows: usize,
    cols: usize,
) -> PyResult<Py<PyAny>> {
    Ok(PyArray1::from_vec(py, v)
        .reshape([rows, cols])?
        .into_any()
        .unbind())
}

/// A JSON value as the equivalent Python object.
fn from_json<'py>(py: Python<'py>, v: &Value) -> PyResult<Bound<'py, PyAny>> {
    Ok(match v {
        Value::Null => py.None().into_bound(py),
        Value::Bool(b) => PyBool::new(py, *b).to_owned().into_any(),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                i.into_pyobject(py)?.into_any()
            } else if let Some(u) = n.as_u64() {
                u.into_pyobject(py)?.into_any()
            } else {
                n.as_f64().unwrap_or(f64::NAN).into_pyobject(py)?.into_any()
            }
        }
        Value::String(s) => PyString::new(py, s).into_any(),
        Value::Array(items) => {
            let list = PyList::empty(py);
            for item in items {
                list.append(from_json(py, item)?)?;
            }
            list.into_any()
        }
        Value::Object(map) => {
            let dict = PyDict::new(py);
            for (k, item) in map {
                dict.set_item(k, from_json(py, item)?)?;
            }
            dict.into_any()
        }
    })
}

/// What `Sampler.sample` returns: NumPy arrays over the rows (in input order),
/// and each row as a dict with the CLI's JSON keys (`result[i]`,
/// `result.rows()`; docs/spec.md §6).
#[pyclass(module = "token_sampler", frozen)]
struct SampleResult {
    rows: Vec<RowResult>,
    /// int64 [B] (draw 0), or [B, samples] when samples > 1.
    #[pyo3(get)]
    tokens: Py<PyAny>,
    /// float64 [B]: ln π of the token (0 for greedy rows).
    #[pyo3(get)]
    logprobs: Py<PyAny>,
    /// float64 [B]: log-softmax of the logits as given, at the token.
    #[pyo3(get)]
    raw_logprobs: Py<PyAny>,
    /// float64 [B]: entropy (nats) after bias, mask and penalties at T = 1.
    #[pyo3(get)]
    entropies: Py<PyAny>,
    /// float64 [B]: varentropy (nats²) of the same distribution.
    #[pyo3(get)]
    varentropies: Py<PyAny>,
    /// float64 [B]: entropy (nats) of π, the distribution sampled.
    #[pyo3(get)]
    final_entropies: Py<PyAny>,
    /// float64 [B]: the entropy that guided the temperature; NaN for rows
    /// without `dynamic_temperature`.
    #[pyo3(get)]
    guide_entropies: Py<PyAny>,
    /// float64 [B]: the temperature applied (0 = greedy).
    #[pyo3(get)]
    temperatures: Py<PyAny>,
    /// float64 [B]: the top-p applied (1 = off).
    #[pyo3(get)]
    top_ps: Py<PyAny>,
    /// float64 [B]: mirostat rows' mu after draw 0, to pass back as
    /// `mirostat.mu` next step (docs/spec.md §3.15); NaN for other rows.
    #[pyo3(get)]
    mirostat_mus: Py<PyAny>,
    /// int64 [B]: finite survivors of every stage.
    #[pyo3(get)]
    kept: Py<PyAny>,
    /// uint64 [B]: the seed each row used (its own, or the fresh one drawn).
    #[pyo3(get)]
    seeds: Py<PyAny>,
    /// int64 [B, n], n the largest `logprobs` asked for (0 columns when no row
    /// asked): the most likely tokens of π, descending; -1 pads rows with
    /// fewer survivors or a smaller `logprobs`.
    #[pyo3(get)]
    top_token_ids: Py<PyAny>,
    /// float64 [B, n]: ln π of `top_token_ids`; -inf pads.
    #[pyo3(get)]
    top_logprobs: Py<PyAny>,
    /// int64 [B, n]: the most likely tokens of the logits as given.
    #[pyo3(get)]
    raw_top_token_ids: Py<PyAny>,
    /// float64 [B, n]: their log-softmax; -inf pads.
    #[pyo3(get)]
    raw_top_logprobs: Py<PyAny>,
    /// The backend that sampled: "reference", "cpu" or "gpu".
    #[pyo3(get)]
    backend: &'static str,
}

impl SampleResult {
    fn new(
        py: Python<'_>,
        rows: Vec<RowResult>,
        samples: u32,
        kind: BackendKind,
    ) -> PyResult<Self> {
        let b = rows.len();
        let col =
            |f: &dyn Fn(&RowResult) -> f64| array1(py, rows.iter().map(f).collect::<Vec<f64>>());
        let tokens = if samples > 1 {
            let flat: Vec<i64> = rows
                .iter()
                .flat_map(|r| r.draws.iter().map(|&t| t as i64))
                .collect();
            array2(py, flat, b, samples as usize)?
        } else {
            array1(py, rows.iter().map(|r| r.token as i64).collect::<Vec<_>>())
        };
        let n = rows
            .iter()
            .filter_map(|r| r.top_logprobs.as_ref())
            .map(|t| t.raw.len().max(t.processed.len()))
            .max()
            .unwrap_or(0);
        let (mut ids, mut lps, mut raw_ids, mut raw_lps) = (
            vec![-1i64; b * n],
            vec![f64::NEG_INFINITY; b * n],
            vec![-1i64; b * n],
            vec![f64::NEG_INFINITY; b * n],
        );
        for (i, r) in rows.iter().enumerate() {
            if let Some(top) = &r.top_logprobs {
                for (j, t) in top.processed.iter().enumerate() {
                    ids[i * n + j] = t.id as i64;
                    lps[i * n + j] = t.logprob;
                }
                for (j, t) in top.raw.iter().enumerate() {
                    raw_ids[i * n + j] = t.id as i64;
                    raw_lps[i * n + j] = t.logprob;
                }
            }
        }
        Ok(SampleResult {
            tokens,
            logprobs: col(&|r| r.logprob),
            raw_logprobs: col(&|r| r.raw_logprob),
            entropies: col(&|r| r.entropy),
            varentropies: col(&|r| r.varentropy),
            final_entropies: col(&|r| r.final_entropy),
            guide_entropies: col(&|r| r.guide_entropy.unwrap_or(f64::NAN)),
            temperatures: col(&|r| r.temperature),
            top_ps: col(&|r| r.top_p),
            mirostat_mus: col(&|r| r.mirostat_mu.unwrap_or(f64::NAN)),
            kept: array1(py, rows.iter().map(|r| r.kept as i64).collect::<Vec<_>>()),
            seeds: array1(py, rows.iter().map(|r| r.seed).collect::<Vec<u64>>()),
            top_token_ids: array2(py, ids, b, n)?,
            top_logprobs: array2(py, lps, b, n)?,
            raw_top_token_ids: array2(py, raw_ids, b, n)?,
            raw_top_logprobs: array2(py, raw_lps, b, n)?,
            backend: kind.name(),
            rows,
        })
    }

    fn row_dict<'py>(&self, py: Python<'py>, i: usize) -> PyResult<Bound<'py, PyAny>> {
        let value = serde_json::to_value(&self.rows[i])
            .map_err(|e| PyRuntimeError::new_err(e.to_string()))?;
        from_json(py, &value)
    }
}

#[pymethods]
impl SampleResult {
    fn __len__(&self) -> usize {
        self.rows.len()
    }

    /// Row `i` as a dict with the CLI's JSON keys: token, draws (samples > 1),
    /// logprob, raw_logprob, entropy, varentropy, guide_entropy (dynamic rows),
    /// final_entropy, temperature, top_p, kept, seed, top_logprobs (rows that
    /// asked), mirostat_mu (mirostat rows).
    fn __getitem__<'py>(&self, py: Python<'py>, i: isize) -> PyResult<Bound<'py, PyAny>> {
        let n = self.rows.len() as isize;
        let j = if i < 0 { i + n } else { i };
        if !(0..n).contains(&j) {
            return Err(pyo3::exceptions::PyIndexError::new_err(format!(
                "row {i} out of range for {n} rows"
            )));
        }
        self.row_dict(py, j as usize)
    }

    /// Every row as a dict (see `__getitem__`).
    fn rows<'py>(&self, py: Python<'py>) -> PyResult<Vec<Bound<'py, PyAny>>> {
        (0..self.rows.len()).map(|i| self.row_dict(py, i)).collect()
    }

    fn __repr__(&self) -> String {
        let tokens: Vec<u32> = self.rows.iter().map(|r| r.token).collect();
        format!(
            "SampleResult(backend={:?}, rows={}, tokens={:?})",
            self.backend,
            self.rows.len(),
            tokens
        )
    }
}

/// What `Sampler.probs` returns.
#[pyclass(module = "token_sampler", frozen)]
struct ProbsResult {
    rows: usize,
    /// float64 [B, V]: π in token-id order, 0 for removed tokens.
    #[pyo3(get)]
    probs: Py<PyAny>,
    /// int64 [B]: finite survivors of every stage.
    #[pyo3(get)]
    kept: Py<PyAny>,
    /// float64 [B]: the temperature applied.
    #[pyo3(get)]
    temperatures: Py<PyAny>,
    /// float64 [B]: the top-p applied.
    #[pyo3(get)]
    top_ps: Py<PyAny>,
    /// float64 [B]: entropy (nats) after bias, mask and penalties at T = 1.
    #[pyo3(get)]
    entropies: Py<PyAny>,
    /// float64 [B]: entropy (nats) of π.
    #[pyo3(get)]
    final_entropies: Py<PyAny>,
    /// float64 [B]: guide entropy; NaN for rows without `dynamic_temperature`.
    #[pyo3(get)]
    guide_entropies: Py<PyAny>,
    /// float64 [B]: mirostat rows' mu, the one the cut used (probs draws
    /// nothing, so mu does not move); NaN for other rows.
    #[pyo3(get)]
    mirostat_mus: Py<PyAny>,
    #[pyo3(get)]
    backend: &'static str,
}

impl ProbsResult {
    fn new(
        py: Python<'_>,
        rows: Vec<RowProbs>,
        flat: Vec<f64>,
        b: usize,
        v: usize,
        kind: BackendKind,
    ) -> PyResult<Self> {
        let col =
            |f: &dyn Fn(&RowProbs) -> f64| array1(py, rows.iter().map(f).collect::<Vec<f64>>());
        Ok(ProbsResult {
            rows: b,
            probs: array2(py, flat, b, v)?,
            kept: array1(py, rows.iter().map(|r| r.kept as i64).collect::<Vec<_>>()),
            temperatures: col(&|r| r.temperature),
            top_ps: col(&|r| r.top_p),
            entropies: col(&|r| r.entropy),
            final_entropies: col(&|r| r.final_entropy),
            guide_entropies: col(&|r| r.guide_entropy.unwrap_or(f64::NAN)),
            mirostat_mus: col(&|r| r.mirostat_mu.unwrap_or(f64::NAN)),
            backend: kind.name(),
        })
    }
}

#[pymethods]
impl ProbsResult {
    fn __len__(&self) -> usize {
        self.rows
    }

    fn __repr__(&self) -> String {
        format!(
            "ProbsResult(backend={:?}, rows={})",
            self.backend, self.rows
        )
    }
}

// ---------------------------------------------------------------- module

/// The parameters a named preset sets (docs/spec.md §10), as a dict to pass
/// as `params` or to extend: `{**token_sampler.preset("chat"), "seed": 7}`.
#[pyfunction]
fn preset<'py>(py: Python<'py>, name: &str) -> PyResult<Bound<'py, PyDict>> {
    let p = token_sampler::preset(name).map_err(|e| to_py_err(py, e))?;
    let d = PyDict::new(py);
    d.set_item("temperature", widen(p.temperature))?;
    d.set_item("top_p", widen(p.top_p))?;
    d.set_item("top_k", p.top_k)?;
    d.set_item("repetition_penalty", widen(p.repetition_penalty))?;
    d.set_item("frequency_penalty", widen(p.frequency_penalty))?;
    Ok(d)
}

/// The names of every preset, task presets first.
#[pyfunction]
fn presets() -> Vec<&'static str> {
    token_sampler::PRESETS.iter().map(|p| p.name).collect()
}

/// Batched, sort-free next-token sampling: temperature (static or
/// entropy-guided), top-k, top-p, min-p, penalties, logit bias and allow-lists
/// over B rows of V logits, on a reference, a multi-threaded CPU or a GPU
/// backend, with the same random draws on all three.
#[pymodule]
#[pyo3(name = "token_sampler")]
fn token_sampler_py(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add_class::<PySampler>()?;
    m.add_class::<SampleResult>()?;
    m.add_class::<ProbsResult>()?;
    m.add_function(wrap_pyfunction!(preset, m)?)?;
    m.add_function(wrap_pyfunction!(presets, m)?)?;
    m.add("SamplerError", py.get_type::<SamplerException>())?;
    m.add("InvalidInputError", invalid_input_type(py)?)?;
    m.add("BackendUnavailableError", backend_unavailable_type(py)?)?;
    m.add("DeviceError", device_error_type(py)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    // The random-number scheme of docs/spec.md §5, as the CLI's JSON names it.
    m.add("RNG", token_sampler::rng::RNG_SCHEME)?;
    m.add("BACKENDS", ["reference", "cpu", "gpu"])?;
    Ok(())
}
