//! Device acquisition (wgpu `repeated_compute`: acquire once, work many times).
//!
//! Adapter choice: `WGPU_BACKEND` limits the backends and `WGPU_ADAPTER_NAME`
//! (a case-insensitive substring) picks an adapter by name; otherwise a
//! discrete GPU is preferred over an integrated, virtual or other one, and a
//! software adapter (lavapipe, WARP, SwiftShader) is used only when allowed.
//! The device is requested with the adapter's real limits, not the defaults.
//!
//! One `wgpu::Instance` serves the whole process, it looks at the native APIs
//! (Vulkan, Metal, DX12) only, and OpenGL only when none of them has an
//! adapter (or `WGPU_BACKEND` asks for it); devices are opened one at a time.
//! An instance with the GL backend initialises EGL, and on NVIDIA's Linux
//! driver EGL state in many threads at once (an instance per thread, threads
//! exiting together: a test harness) is known to deadlock inside the driver;
//! enumerating every ICD from many threads at once has crashed drivers too.

use std::sync::{Arc, Mutex, OnceLock};

use serde::Serialize;

use crate::error::{Result, SamplerError};

/// The device, its queue and what the adapter offers.
pub struct GpuContext {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub info: wgpu::AdapterInfo,
    pub limits: wgpu::Limits,
    /// Features the device was opened with (TIMESTAMP_QUERY and
    /// TIMESTAMP_QUERY_INSIDE_PASSES where offered).
    pub features: wgpu::Features,
    /// Everything the adapter offers (for `info`).
    pub adapter_features: wgpu::Features,
    /// Whether the device was lost, and wgpu errors no call caught.
    pub(crate) health: Arc<Health>,
    /// Opened here (so a lost one can be replaced), not the caller's.
    pub(crate) owned: bool,
}

/// What the device's callbacks report: that it was lost (a driver reset, a
/// removed GPU, `destroy`), and the first wgpu error raised outside a call's
/// error scopes (wgpu's default handler would panic on it).
#[derive(Debug, Default)]
pub(crate) struct Health {
    lost: Mutex<Option<String>>,
    uncaptured: Mutex<Option<String>>,
}

impl Health {
    /// Why the device was lost, if it was.
    pub(crate) fn lost(&self) -> Option<String> {
        self.lost.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub(crate) fn set_lost(&self, reason: String) {
        let mut l = self.lost.lock().unwrap_or_else(|p| p.into_inner());
        if l.is_none() {
            *l = Some(reason);
        }
    }

    /// The first uncaught wgpu error since the last look, taken.
    pub(crate) fn take_uncaptured(&self) -> Option<String> {
        self.uncaptured
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }

    /// Installs the device's lost callback and uncaptured-error handler.
    fn watch(self: &Arc<Self>, device: &wgpu::Device) {
        let h = self.clone();
        device.set_device_lost_callback(move |reason, message| {
            h.set_lost(format!("{reason:?}: {message}"));
        });
        let h = self.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            let mut u = h.uncaptured.lock().unwrap_or_else(|p| p.into_inner());
            if u.is_none() {
                *u = Some(e.to_string());
            }
        }));
    }
}

fn unavailable(reason: impl Into<String>) -> SamplerError {
    SamplerError::BackendUnavailable {
        backend: "gpu".into(),
        reason: reason.into(),
    }
}

/// The process's instance for `backends` (`WGPU_BACKEND`, when set, wins).
///
/// Without wgpu's validation of indirect dispatches (`WGPU_VALIDATION_INDIRECT_CALL=1`
/// turns it back on): it adds a dispatch and two barriers to every indirect
/// one, i.e. to each scan and solver dispatch of every recorded round, empty
/// or not. The sampler's own arguments are in range by construction: x is the
/// tile count and y the rows that asked for the round, both checked against
/// `max_compute_workgroups_per_dimension` on the host (sampler.rs), z is 1.
fn make_instance(backends: wgpu::Backends) -> wgpu::Instance {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
    desc.backends = backends;
    desc.flags
        .remove(wgpu::InstanceFlags::VALIDATION_INDIRECT_CALL);
    wgpu::Instance::new(desc.with_env())
}

/// The native APIs' instance, created once.
fn instance() -> &'static wgpu::Instance {
    static PRIMARY: OnceLock<wgpu::Instance> = OnceLock::new();
    PRIMARY.get_or_init(|| make_instance(wgpu::Backends::PRIMARY))
}

/// The OpenGL instance, created once and only when asked for (no native
/// adapter, and `WGPU_BACKEND` unset).
fn gl_instance() -> &'static wgpu::Instance {
    static GL: OnceLock<wgpu::Instance> = OnceLock::new();
    GL.get_or_init(|| make_instance(wgpu::Backends::GL))
}

/// Every adapter of the native APIs (or of `WGPU_BACKEND`'s), else OpenGL's.
async fn enumerate() -> Vec<wgpu::Adapter> {
    let adapters = instance().enumerate_adapters(wgpu::Backends::all()).await;
    if !adapters.is_empty() || wgpu::Backends::from_env().is_some() {
        return adapters;
    }
    gl_instance()
        .enumerate_adapters(wgpu::Backends::all())
        .await
}

/// Held while a device is being opened: one at a time per process.
static OPENING: Mutex<()> = Mutex::new(());

/// Whether an adapter runs on the CPU (lavapipe/llvmpipe, WARP, SwiftShader).
pub fn is_software(info: &wgpu::AdapterInfo) -> bool {
    info.device_type == wgpu::DeviceType::Cpu
}

/// Lower is preferred: discrete before integrated, virtual, other and
/// software adapters; on one device the native APIs before OpenGL.
fn rank(info: &wgpu::AdapterInfo) -> (u32, u32) {
    let kind = match info.device_type {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Other => 3,
        wgpu::DeviceType::Cpu => 4,
    };
    let api = match info.backend {
        wgpu::Backend::Vulkan | wgpu::Backend::Metal | wgpu::Backend::Dx12 => 0,
        wgpu::Backend::Gl => 1,
        _ => 2,
    };
    (kind, api)
}

/// Every adapter the backend looks at (honouring `WGPU_BACKEND`).
pub async fn list_adapters() -> Vec<wgpu::AdapterInfo> {
    enumerate()
        .await
        .into_iter()
        .map(|a| a.get_info())
        .collect()
}

impl GpuContext {
    /// Opens the preferred adapter; `allow_software` admits a CPU adapter.
    pub async fn new(allow_software: bool) -> Result<Self> {
        Self::open(allow_software)
    }

    /// [`GpuContext::new`] on this thread. wgpu's native adapter and device
    /// requests complete at once, so the lock that keeps openings one at a
    /// time is never held across a real wait (and the async `new` stays Send).
    fn open(allow_software: bool) -> Result<Self> {
        let _one_at_a_time = OPENING.lock().unwrap_or_else(|p| p.into_inner());
        let mut adapters = pollster::block_on(enumerate());
        if adapters.is_empty() {
            return Err(unavailable(
                "no GPU adapter found (is a Vulkan, Metal or DX12 driver installed?)",
            ));
        }
        if let Ok(name) = std::env::var("WGPU_ADAPTER_NAME") {
            let want = name.to_lowercase();
            adapters.retain(|a| a.get_info().name.to_lowercase().contains(&want));
            if adapters.is_empty() {
                return Err(unavailable(format!(
                    "no adapter name contains WGPU_ADAPTER_NAME=`{name}`"
                )));
            }
        }
        adapters.sort_by_key(|a| rank(&a.get_info()));
        let adapter = adapters
            .into_iter()
            .find(|a| allow_software || !is_software(&a.get_info()))
            .ok_or_else(|| {
                unavailable("only a software adapter (e.g. lavapipe) is present; pass --backend gpu to use it")
            })?;
        let info = adapter.get_info();
        let limits = adapter.limits();
        let adapter_features = adapter.features();
        let features = adapter_features
            & (wgpu::Features::TIMESTAMP_QUERY | wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES);
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("token-sampler"),
            required_features: features,
            required_limits: limits.clone(),
            experimental_features: wgpu::ExperimentalFeatures::disabled(),
            memory_hints: wgpu::MemoryHints::Performance,
            trace: wgpu::Trace::Off,
        }))
        .map_err(|e| unavailable(format!("{}: {e}", info.name)))?;
        let health = Arc::new(Health::default());
        health.watch(&device);
        Ok(GpuContext {
            device,
            queue,
            info,
            limits,
            features,
            adapter_features,
            health,
            owned: true,
        })
    }

    /// Wraps a device a server already owns (its adapter is not known here).
    /// Its lost callback and error handler stay the owner's: the sampler
    /// learns of a loss from its own calls failing.
    pub fn from_device(device: wgpu::Device, queue: wgpu::Queue) -> Self {
        let limits = device.limits();
        let features = device.features();
        let info = caller_device_info();
        GpuContext {
            device,
            queue,
            info,
            limits,
            features,
            adapter_features: features,
            health: Arc::default(),
            owned: false,
        }
    }

    pub fn describe(&self) -> String {
        format!(
            "{} ({:?}, {:?})",
            self.info.name, self.info.backend, self.info.device_type
        )
    }
}

fn caller_device_info() -> wgpu::AdapterInfo {
    wgpu::AdapterInfo {
        name: "caller's device".into(),
        vendor: 0,
        device: 0,
        device_type: wgpu::DeviceType::Other,
        device_pci_bus_id: String::new(),
        driver: String::new(),
        driver_info: String::new(),
        backend: wgpu::Backend::Noop,
        subgroup_min_size: 0,
        subgroup_max_size: 0,
        transient_saves_memory: None,
        limit_bucket: None,
    }
}

/// One adapter as `info` lists it.
#[derive(Debug, Clone, Serialize)]
pub struct AdapterEntry {
    pub name: String,
    pub backend: String,
    pub device_type: String,
    pub driver: String,
    pub driver_info: String,
    pub vendor: u32,
    pub device: u32,
    /// Whether `--backend gpu` opens this one.
    pub chosen: bool,
}

/// The limits that decide the sampler's sizes and tiling.
#[derive(Debug, Clone, Serialize)]
pub struct KeyLimits {
    pub max_storage_buffer_binding_size: u64,
    pub max_buffer_size: u64,
    pub max_compute_workgroup_storage_size: u32,
    pub max_compute_invocations_per_workgroup: u32,
    pub max_compute_workgroup_size_x: u32,
    pub max_compute_workgroups_per_dimension: u32,
    pub min_storage_buffer_offset_alignment: u32,
    pub subgroup_min_size: u32,
    pub subgroup_max_size: u32,
}

/// The adapter features the sampler cares about.
#[derive(Debug, Clone, Serialize)]
pub struct KeyFeatures {
    /// f16 arithmetic in shaders (the sampler decodes f16/bf16 by bits and
    /// does not need it).
    pub shader_f16: bool,
    /// GPU timestamps: `last_kernel_ms`, `bench`'s `kernel` mode.
    pub timestamp_query: bool,
    pub subgroup: bool,
}

/// Workspace memory of one call of `rows` × `vocab`.
#[derive(Debug, Clone, Serialize)]
pub struct WorkspaceEntry {
    pub rows: usize,
    pub vocab: usize,
    pub bytes: u64,
}

/// What `info` reports about the GPU backend.
#[derive(Debug, Clone, Serialize)]
pub struct GpuReport {
    pub adapters: Vec<AdapterEntry>,
    /// The adapter `--backend gpu` opens (software allowed), or why none.
    pub chosen: Option<String>,
    pub error: Option<String>,
    /// Whether the default backend choice (hardware adapters only) takes it.
    pub default_uses_it: bool,
    pub limits: Option<KeyLimits>,
    pub features: Option<KeyFeatures>,
    /// Workgroup and tile sizes chosen from the limits.
    pub shader_sizes: Option<crate::gpu::shaders::ShaderConsts>,
    pub workspace: Vec<WorkspaceEntry>,
}

fn same_adapter(a: &wgpu::AdapterInfo, b: &wgpu::AdapterInfo) -> bool {
    a.name == b.name && a.backend == b.backend && a.vendor == b.vendor && a.device == b.device
}

impl KeyLimits {
    pub fn of(limits: &wgpu::Limits, info: &wgpu::AdapterInfo) -> Self {
        KeyLimits {
            max_storage_buffer_binding_size: limits.max_storage_buffer_binding_size,
            max_buffer_size: limits.max_buffer_size,
            max_compute_workgroup_storage_size: limits.max_compute_workgroup_storage_size,
            max_compute_invocations_per_workgroup: limits.max_compute_invocations_per_workgroup,
            max_compute_workgroup_size_x: limits.max_compute_workgroup_size_x,
            max_compute_workgroups_per_dimension: limits.max_compute_workgroups_per_dimension,
            min_storage_buffer_offset_alignment: limits.min_storage_buffer_offset_alignment,
            subgroup_min_size: info.subgroup_min_size,
            subgroup_max_size: info.subgroup_max_size,
        }
    }
}

impl KeyFeatures {
    pub fn of(f: wgpu::Features) -> Self {
        KeyFeatures {
            shader_f16: f.contains(wgpu::Features::SHADER_F16),
            timestamp_query: f.contains(wgpu::Features::TIMESTAMP_QUERY),
            subgroup: f.contains(wgpu::Features::SUBGROUP),
        }
    }
}

/// Lists every adapter and opens the one `--backend gpu` would use.
pub fn gpu_report() -> GpuReport {
    let infos = pollster::block_on(list_adapters());
    let opened = crate::gpu::GpuSampler::new_blocking(true);
    let chosen_info = opened.as_ref().ok().map(|g| g.context().info.clone());
    let adapters = infos
        .iter()
        .map(|a| AdapterEntry {
            name: a.name.clone(),
            backend: format!("{:?}", a.backend),
            device_type: format!("{:?}", a.device_type),
            driver: a.driver.clone(),
            driver_info: a.driver_info.clone(),
            vendor: a.vendor,
            device: a.device,
            chosen: chosen_info.as_ref().is_some_and(|c| same_adapter(a, c)),
        })
        .collect();
    match opened {
        Ok(g) => {
            let ctx = g.context();
            let workspace = [(1, 200_064), (32, 128_256), (256, 200_064)]
                .into_iter()
                .filter_map(|(rows, vocab)| {
                    let bytes = g.workspace_estimate(rows, vocab).ok()?;
                    Some(WorkspaceEntry { rows, vocab, bytes })
                })
                .collect();
            GpuReport {
                adapters,
                chosen: Some(ctx.describe()),
                error: None,
                default_uses_it: !is_software(&ctx.info),
                limits: Some(KeyLimits::of(&ctx.limits, &ctx.info)),
                features: Some(KeyFeatures::of(ctx.adapter_features)),
                shader_sizes: Some(g.shader_consts()),
                workspace,
            }
        }
        Err(e) => GpuReport {
            adapters,
            chosen: None,
            error: Some(e.to_string()),
            default_uses_it: false,
            limits: None,
            features: None,
            shader_sizes: None,
            workspace: Vec::new(),
        },
    }
}
