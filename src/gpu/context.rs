//! Device acquisition (wgpu `repeated_compute`: acquire once, work many times).
//!
//! Adapter choice: `WGPU_BACKEND` limits the backends and `WGPU_ADAPTER_NAME`
//! (a case-insensitive substring) picks an adapter by name; otherwise a
//! discrete GPU is preferred over an integrated, virtual or other one, and a
//! software adapter (lavapipe, WARP, SwiftShader) is used only when allowed.
//! The device is requested with the adapter's real limits, not the defaults.

use crate::error::{Result, SamplerError};

/// The device, its queue and what the adapter offers.
pub struct GpuContext {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub info: wgpu::AdapterInfo,
    pub limits: wgpu::Limits,
    pub features: wgpu::Features,
}

fn unavailable(reason: impl Into<String>) -> SamplerError {
    SamplerError::BackendUnavailable {
        backend: "gpu".into(),
        reason: reason.into(),
    }
}

fn instance() -> wgpu::Instance {
    wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env())
}

/// Whether an adapter runs on the CPU (lavapipe/llvmpipe, WARP, SwiftShader).
pub fn is_software(info: &wgpu::AdapterInfo) -> bool {
    info.device_type == wgpu::DeviceType::Cpu
}

fn rank(t: wgpu::DeviceType) -> u32 {
    match t {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Other => 3,
        wgpu::DeviceType::Cpu => 4,
    }
}

/// Every adapter wgpu sees here (honouring `WGPU_BACKEND`).
pub async fn list_adapters() -> Vec<wgpu::AdapterInfo> {
    let inst = instance();
    let backends = wgpu::Backends::from_env().unwrap_or(wgpu::Backends::all());
    inst.enumerate_adapters(backends)
        .await
        .into_iter()
        .map(|a| a.get_info())
        .collect()
}

impl GpuContext {
    /// Opens the preferred adapter; `allow_software` admits a CPU adapter.
    pub async fn new(allow_software: bool) -> Result<Self> {
        let inst = instance();
        let backends = wgpu::Backends::from_env().unwrap_or(wgpu::Backends::all());
        let mut adapters = inst.enumerate_adapters(backends).await;
        if adapters.is_empty() {
            return Err(unavailable("no GPU adapter found (is a Vulkan, Metal or DX12 driver installed?)"));
        }
        if let Ok(name) = std::env::var("WGPU_ADAPTER_NAME") {
            let want = name.to_lowercase();
            adapters.retain(|a| a.get_info().name.to_lowercase().contains(&want));
            if adapters.is_empty() {
                return Err(unavailable(format!("no adapter name contains WGPU_ADAPTER_NAME=`{name}`")));
            }
        }
        adapters.sort_by_key(|a| rank(a.get_info().device_type));
        let adapter = adapters
            .into_iter()
            .find(|a| allow_software || !is_software(&a.get_info()))
            .ok_or_else(|| {
                unavailable("only a software adapter (e.g. lavapipe) is present; pass --backend gpu to use it")
            })?;
        let info = adapter.get_info();
        let limits = adapter.limits();
        let features = adapter.features() & wgpu::Features::TIMESTAMP_QUERY;
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("token-sampler"),
                required_features: features,
                required_limits: limits.clone(),
                experimental_features: wgpu::ExperimentalFeatures::disabled(),
                memory_hints: wgpu::MemoryHints::Performance,
                trace: wgpu::Trace::Off,
            })
            .await
            .map_err(|e| unavailable(format!("{}: {e}", info.name)))?;
        Ok(GpuContext { device, queue, info, limits, features })
    }

    /// Wraps a device a server already owns (its adapter is not known here).
    pub fn from_device(device: wgpu::Device, queue: wgpu::Queue) -> Self {
        let limits = device.limits();
        let features = device.features();
        let info = caller_device_info();
        GpuContext { device, queue, info, limits, features }
    }

    pub fn describe(&self) -> String {
        format!("{} ({:?}, {:?})", self.info.name, self.info.backend, self.info.device_type)
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
