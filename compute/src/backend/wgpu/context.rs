//! The device and everything that talks to it directly: adapter and device
//! set-up, the cached compute pipelines, buffers, dispatches, waits and
//! read-backs, and turning every wgpu failure into a [`ComputeError`].

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, mpsc};

use ::wgpu::util::DeviceExt;

use crate::{BackendKind, ComputeError};

/// Why no wgpu device could be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InitError {
    /// No Vulkan adapter, hardware or software, was found.
    #[error("no Vulkan adapter found ({0}); install a Vulkan driver (Mesa's lavapipe is enough)")]
    NoAdapter(String),
    /// The adapter would not open a device.
    #[error("the Vulkan adapter {adapter} refused a device: {reason}")]
    NoDevice { adapter: String, reason: String },
}

/// A `ComputeError` for a failure of this backend's device.
pub(super) fn device_error(reason: impl Into<String>) -> ComputeError {
    ComputeError::Device { backend: BackendKind::Wgpu, reason: reason.into() }
}

/// Workgroup size of the image kernels in each dimension (`image_common.wgsl`).
const IMAGE_WORKGROUP_SIDE: u32 = 8;
/// Workgroup size of the one-dimensional hash kernels (`blake3.wgsl`).
const HASH_WORKGROUP: u32 = 64;

/// A compute kernel: one entry point of one WGSL file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Kernel {
    Pixel,
    Blur,
    Unsharp,
    Sobel,
    Convolve,
    Resize,
    Remap,
    Sha256Blocks,
    Sha256Rounds,
    Blake3Chunks,
    Blake3Parents,
    Blake3Rounds,
}

macro_rules! wgsl {
    ($name:literal) => {
        include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../shaders/wgsl/", $name))
    };
}

/// Image kernels share a prelude (bindings, pixel packing, the dispatch loop)
/// and define `shade`.
macro_rules! image_kernel {
    ($name:literal) => {
        concat!(wgsl!("image_common.wgsl"), "\n", wgsl!($name))
    };
}

impl Kernel {
    /// The WGSL source of the kernel's module.
    fn source(self) -> &'static str {
        match self {
            Kernel::Pixel => image_kernel!("pixel.wgsl"),
            Kernel::Blur => image_kernel!("blur.wgsl"),
            Kernel::Unsharp => image_kernel!("unsharp.wgsl"),
            Kernel::Sobel => image_kernel!("sobel.wgsl"),
            Kernel::Convolve => image_kernel!("convolve.wgsl"),
            Kernel::Resize => image_kernel!("resize.wgsl"),
            Kernel::Remap => image_kernel!("remap.wgsl"),
            Kernel::Sha256Blocks | Kernel::Sha256Rounds => wgsl!("sha256.wgsl"),
            Kernel::Blake3Chunks | Kernel::Blake3Parents | Kernel::Blake3Rounds => wgsl!("blake3.wgsl"),
        }
    }

    fn entry_point(self) -> &'static str {
        match self {
            Kernel::Pixel
            | Kernel::Blur
            | Kernel::Unsharp
            | Kernel::Sobel
            | Kernel::Convolve
            | Kernel::Resize
            | Kernel::Remap => "main",
            Kernel::Sha256Blocks => "blocks",
            Kernel::Sha256Rounds | Kernel::Blake3Rounds => "rounds",
            Kernel::Blake3Chunks => "chunks",
            Kernel::Blake3Parents => "parents",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Kernel::Pixel => "pixel",
            Kernel::Blur => "blur",
            Kernel::Unsharp => "unsharp",
            Kernel::Sobel => "sobel",
            Kernel::Convolve => "convolve",
            Kernel::Resize => "resize",
            Kernel::Remap => "remap",
            Kernel::Sha256Blocks => "sha256 blocks",
            Kernel::Sha256Rounds => "sha256 rounds",
            Kernel::Blake3Chunks => "blake3 chunks",
            Kernel::Blake3Parents => "blake3 parents",
            Kernel::Blake3Rounds => "blake3 rounds",
        }
    }
}

/// The process's wgpu instance: made by the first device and never dropped
/// (a static never is). Dropping the last instance unloads the Vulkan
/// loader and, with it, the driver, whose own threads (lavapipe's
/// rasterisers) may still be running in it while the process exits.
fn instance() -> &'static ::wgpu::Instance {
    static INSTANCE: std::sync::OnceLock<::wgpu::Instance> = std::sync::OnceLock::new();
    INSTANCE.get_or_init(|| {
        ::wgpu::Instance::new(::wgpu::InstanceDescriptor {
            backends: ::wgpu::Backends::VULKAN,
            // Vulkan's validation layer is slow and rarely installed; wgpu's
            // own validation still runs. WGPU_VALIDATION=1 turns it on.
            flags: ::wgpu::InstanceFlags::empty().with_env(),
            ..::wgpu::InstanceDescriptor::new_without_display_handle()
        })
    })
}

/// An open device, its queue, and the pipelines built on it so far.
pub(super) struct Gpu {
    device: ::wgpu::Device,
    queue: ::wgpu::Queue,
    adapter: ::wgpu::AdapterInfo,
    /// The largest storage buffer a kernel may bind: the smaller of the
    /// device's binding and buffer limits (or less, when forced for tests).
    /// Images and messages larger than this are processed in tiles.
    max_buffer_bytes: u64,
    /// Workgroups one dispatch may have per dimension; kernels loop over
    /// whatever a capped dispatch leaves uncovered.
    max_workgroups: u32,
    /// Pipelines are compiled on first use and kept: shader compilation is
    /// the slow part of a dispatch, especially on software Vulkan.
    pipelines: RefCell<HashMap<Kernel, ::wgpu::ComputePipeline>>,
    /// Why the device was lost, once it has been: every later call fails.
    lost: Arc<Mutex<Option<String>>>,
    /// The first error wgpu reported outside an error scope, failing the
    /// next call that checks for it.
    uncaptured: Arc<Mutex<Option<String>>>,
}

impl std::fmt::Debug for Gpu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gpu")
            .field("adapter", &self.adapter.name)
            .field("max_buffer_bytes", &self.max_buffer_bytes)
            .field("max_workgroups", &self.max_workgroups)
            .finish_non_exhaustive()
    }
}

impl Gpu {
    /// Opens the best Vulkan adapter: a high-performance GPU when there is
    /// one, else whatever adapter exists (Mesa's lavapipe included).
    pub(super) fn open() -> Result<Gpu, InitError> {
        let instance = instance();
        let preferred = pollster::block_on(instance.request_adapter(&::wgpu::RequestAdapterOptions {
            power_preference: ::wgpu::PowerPreference::HighPerformance,
            ..Default::default()
        }));
        let adapter = match preferred {
            Ok(adapter) => adapter,
            Err(preferred_error) => {
                let mut adapters = pollster::block_on(instance.enumerate_adapters(::wgpu::Backends::VULKAN));
                // Hardware before software.
                adapters.sort_by_key(|a| a.get_info().device_type == ::wgpu::DeviceType::Cpu);
                adapters.into_iter().next().ok_or_else(|| InitError::NoAdapter(preferred_error.to_string()))?
            }
        };
        let adapter_info = adapter.get_info();
        // The adapter's own limits, not WebGPU's portable defaults: large
        // images need the largest storage buffers the hardware allows.
        let limits = adapter.limits();
        let (device, queue) = pollster::block_on(adapter.request_device(&::wgpu::DeviceDescriptor {
            label: Some("wimpy compute"),
            required_limits: limits.clone(),
            ..Default::default()
        }))
        .map_err(|e| InitError::NoDevice { adapter: adapter_info.name.clone(), reason: e.to_string() })?;

        let uncaptured = Arc::new(Mutex::new(None));
        // wgpu's default handler panics; record the error for the next call instead.
        let slot = Arc::clone(&uncaptured);
        device.on_uncaptured_error(Arc::new(move |error: ::wgpu::Error| {
            record(&slot, format!("uncaptured wgpu error: {error}"));
        }));
        let lost = Arc::new(Mutex::new(None));
        let slot = Arc::clone(&lost);
        device.set_device_lost_callback(move |reason, message| {
            record(&slot, format!("device lost ({reason:?}): {message}"));
        });

        // Kernels count bytes and index words in u32, so a binding stays below 4 GiB.
        let max_buffer_bytes =
            limits.max_storage_buffer_binding_size.min(limits.max_buffer_size).min(u64::from(u32::MAX)) & !3;
        Ok(Gpu {
            device,
            queue,
            adapter: adapter_info,
            max_buffer_bytes,
            max_workgroups: limits.max_compute_workgroups_per_dimension.max(1),
            pipelines: RefCell::new(HashMap::new()),
            lost,
            uncaptured,
        })
    }

    pub(super) fn adapter(&self) -> &::wgpu::AdapterInfo {
        &self.adapter
    }

    pub(super) fn max_buffer_bytes(&self) -> u64 {
        self.max_buffer_bytes
    }

    /// Lowers the largest buffer a kernel binds (never above the device's limit).
    pub(super) fn limit_buffer_bytes(&mut self, bytes: u64) {
        self.max_buffer_bytes = self.max_buffer_bytes.min(bytes & !3);
    }

    /// Lowers the workgroups one dispatch may have per dimension.
    pub(super) fn limit_workgroups(&mut self, groups: u32) {
        self.max_workgroups = self.max_workgroups.min(groups.max(1));
    }

    /// Runs `f`, turning any validation, out-of-memory or internal error wgpu
    /// reports meanwhile (or a lost device) into a `ComputeError` that names
    /// `what`. wgpu reports errors through error scopes, not return values, so
    /// every piece of GPU work runs inside one of these.
    pub(super) fn checked<T>(
        &self,
        what: &str,
        f: impl FnOnce() -> Result<T, ComputeError>,
    ) -> Result<T, ComputeError> {
        self.check_fault(what)?;
        let out_of_memory = self.device.push_error_scope(::wgpu::ErrorFilter::OutOfMemory);
        let validation = self.device.push_error_scope(::wgpu::ErrorFilter::Validation);
        let internal = self.device.push_error_scope(::wgpu::ErrorFilter::Internal);
        let result = f();
        // Scopes pop innermost first.
        let errors = [
            pollster::block_on(internal.pop()),
            pollster::block_on(validation.pop()),
            pollster::block_on(out_of_memory.pop()),
        ];
        // The device's own report says more than `f`'s "mapping failed".
        if let Some(error) = errors.into_iter().flatten().next() {
            return Err(device_error(format!("{what}: {error}")));
        }
        self.check_fault(what)?;
        result
    }

    fn check_fault(&self, what: &str) -> Result<(), ComputeError> {
        if let Some(reason) = lock(&self.lost).as_ref() {
            return Err(device_error(format!("{what}: {reason}")));
        }
        if let Some(error) = lock(&self.uncaptured).take() {
            return Err(device_error(format!("{what}: {error}")));
        }
        Ok(())
    }

    /// The pipeline of `kernel`, compiled on first use.
    fn pipeline(&self, kernel: Kernel) -> ::wgpu::ComputePipeline {
        self.pipelines
            .borrow_mut()
            .entry(kernel)
            .or_insert_with(|| {
                let module = self.device.create_shader_module(::wgpu::ShaderModuleDescriptor {
                    label: Some(kernel.label()),
                    source: ::wgpu::ShaderSource::Wgsl(kernel.source().into()),
                });
                self.device.create_compute_pipeline(&::wgpu::ComputePipelineDescriptor {
                    label: Some(kernel.label()),
                    // Derived from the entry point: it binds exactly what it uses.
                    layout: None,
                    module: &module,
                    entry_point: Some(kernel.entry_point()),
                    compilation_options: Default::default(),
                    cache: None,
                })
            })
            .clone()
    }

    /// A storage buffer of `bytes` (at least one word: bindings cannot be empty).
    pub(super) fn storage(&self, label: &str, bytes: u64) -> ::wgpu::Buffer {
        self.device.create_buffer(&::wgpu::BufferDescriptor {
            label: Some(label),
            size: bytes.next_multiple_of(4).max(4),
            usage: ::wgpu::BufferUsages::STORAGE | ::wgpu::BufferUsages::COPY_SRC | ::wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        })
    }

    /// A storage buffer holding `contents` (zero-padded to whole words).
    pub(super) fn storage_with(&self, label: &str, contents: &[u8]) -> ::wgpu::Buffer {
        if contents.is_empty() {
            return self.storage(label, 4);
        }
        self.device.create_buffer_init(&::wgpu::util::BufferInitDescriptor {
            label: Some(label),
            contents,
            usage: ::wgpu::BufferUsages::STORAGE | ::wgpu::BufferUsages::COPY_SRC,
        })
    }

    pub(super) fn encoder(&self) -> ::wgpu::CommandEncoder {
        self.device.create_command_encoder(&::wgpu::CommandEncoderDescriptor { label: Some("wimpy compute") })
    }

    /// Records one dispatch of `kernel`: `params` bound as the uniform at
    /// binding 0, `buffers` at their bindings, `groups` workgroups.
    pub(super) fn dispatch(
        &self,
        encoder: &mut ::wgpu::CommandEncoder,
        kernel: Kernel,
        params: &[u8],
        buffers: &[(u32, &::wgpu::Buffer)],
        groups: (u32, u32),
    ) {
        let pipeline = self.pipeline(kernel);
        let uniform = self.device.create_buffer_init(&::wgpu::util::BufferInitDescriptor {
            label: Some(kernel.label()),
            contents: params,
            usage: ::wgpu::BufferUsages::UNIFORM,
        });
        let mut entries = vec![::wgpu::BindGroupEntry { binding: 0, resource: uniform.as_entire_binding() }];
        entries.extend(
            buffers
                .iter()
                .map(|&(binding, buffer)| ::wgpu::BindGroupEntry { binding, resource: buffer.as_entire_binding() }),
        );
        let bind_group = self.device.create_bind_group(&::wgpu::BindGroupDescriptor {
            label: Some(kernel.label()),
            layout: &pipeline.get_bind_group_layout(0),
            entries: &entries,
        });
        // One pass per dispatch: wgpu orders passes and puts the barriers
        // between a pass that writes a buffer and the next that reads it.
        let mut pass = encoder
            .begin_compute_pass(&::wgpu::ComputePassDescriptor { label: Some(kernel.label()), timestamp_writes: None });
        pass.set_pipeline(&pipeline);
        pass.set_bind_group(0, &bind_group, &[]);
        pass.dispatch_workgroups(groups.0, groups.1, 1);
    }

    /// Workgroups for an image kernel writing `width × rows` pixels, capped
    /// at the device's limit (the kernel loops over the rest).
    pub(super) fn image_groups(&self, width: u32, rows: u32) -> (u32, u32) {
        let cap = |n: u32| n.div_ceil(IMAGE_WORKGROUP_SIDE).clamp(1, self.max_workgroups);
        (cap(width), cap(rows))
    }

    /// Invocations one dispatch of a hash kernel may have.
    pub(super) fn hash_invocations_per_dispatch(&self) -> u32 {
        self.max_workgroups.saturating_mul(HASH_WORKGROUP)
    }

    /// Workgroups for a hash kernel of `items` invocations (at most
    /// [`Gpu::hash_invocations_per_dispatch`]).
    pub(super) fn hash_groups(&self, items: u32) -> (u32, u32) {
        (items.div_ceil(HASH_WORKGROUP).clamp(1, self.max_workgroups), 1)
    }

    /// Submits `encoder` and blocks until the device has run it.
    pub(super) fn submit_and_wait(&self, encoder: ::wgpu::CommandEncoder) -> Result<(), ComputeError> {
        let index = self.queue.submit([encoder.finish()]);
        self.wait(Some(index))
    }

    fn wait(&self, index: Option<::wgpu::SubmissionIndex>) -> Result<(), ComputeError> {
        self.device
            .poll(::wgpu::PollType::Wait { submission_index: index, timeout: None })
            .map(drop)
            .map_err(|e| device_error(format!("waiting for the device: {e}")))
    }

    /// Waits until every upload made so far has reached the device, so its
    /// time counts as upload rather than as the next kernel.
    pub(super) fn flush_uploads(&self) -> Result<(), ComputeError> {
        let index = self.queue.submit([]);
        self.wait(Some(index))
    }

    /// The first `bytes` of `buffer`, copied back to the host.
    pub(super) fn read(&self, buffer: &::wgpu::Buffer, bytes: u64) -> Result<Vec<u8>, ComputeError> {
        if bytes == 0 {
            return Ok(Vec::new());
        }
        let staging = self.device.create_buffer(&::wgpu::BufferDescriptor {
            label: Some("read-back"),
            size: bytes,
            usage: ::wgpu::BufferUsages::MAP_READ | ::wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut encoder = self.encoder();
        encoder.copy_buffer_to_buffer(buffer, 0, &staging, 0, bytes);
        self.queue.submit([encoder.finish()]);
        let (sender, receiver) = mpsc::channel();
        staging.slice(..).map_async(::wgpu::MapMode::Read, move |result| {
            // The receiver outlives the wait below; a send can only fail after
            // an earlier error already returned from this function.
            let _ = sender.send(result);
        });
        self.wait(None)?;
        match receiver.try_recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(device_error(format!("mapping the result for reading: {e}"))),
            Err(_) => return Err(device_error("the device finished without mapping the result")),
        }
        let pixels = staging
            .slice(..)
            .get_mapped_range()
            .map_err(|e| device_error(format!("reading the mapped result: {e}")))?
            .to_vec();
        staging.unmap();
        Ok(pixels)
    }
}

/// Keeps the first message put in `slot` until it is taken.
fn record(slot: &Mutex<Option<String>>, message: String) {
    lock(slot).get_or_insert(message);
}

/// The slot's lock; a panic while holding it leaves a plain `Option` behind,
/// which is still valid.
fn lock(slot: &Mutex<Option<String>>) -> std::sync::MutexGuard<'_, Option<String>> {
    slot.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
