//! The GL side: programs, textures, draws, uploads and read-backs, with every
//! GL failure turned into [`ComputeError::Device`].
//!
//! Every texture belongs to one job: [`Gpu::end_job`] deletes them all, so an
//! error half-way through a pipeline leaks nothing into the next job, and
//! nothing large stays allocated between jobs. Within a job, released
//! textures are reused by size and format (ping-ponging passes need the same
//! two sizes over and over).

use std::collections::HashMap;
use std::ffi::{CStr, c_char, c_void};

use glow::HasContext;

use super::GlesUnavailable;
use super::egl::HeadlessContext;
use super::programs::ProgramId;
use crate::backend::BackendKind;
use crate::{ComputeError, Image};

/// The smallest GL_MAX_TEXTURE_SIZE OpenGL ES 3.0 allows; the hash layouts
/// are sized to it.
pub(super) const GLES3_MIN_TEXTURE_SIZE: u32 = 2048;

/// Released textures kept for reuse within a job.
const FREE_TEXTURES_KEPT: usize = 8;

pub(super) fn device_error(reason: impl Into<String>) -> ComputeError {
    ComputeError::Device { backend: BackendKind::Gles, reason: reason.into() }
}

/// What a texture stores, texel by texel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TextureFormat {
    /// RGBA8UI: one pixel.
    Rgba8,
    /// RGBA32UI: four hash words.
    Rgba32,
    /// R32I: one weight or tap index.
    R32,
}

impl TextureFormat {
    fn internal_format(self) -> u32 {
        match self {
            TextureFormat::Rgba8 => glow::RGBA8UI,
            TextureFormat::Rgba32 => glow::RGBA32UI,
            TextureFormat::R32 => glow::R32I,
        }
    }

    /// The format and type of host data for this texture.
    fn transfer(self) -> (u32, u32) {
        match self {
            TextureFormat::Rgba8 => (glow::RGBA_INTEGER, glow::UNSIGNED_BYTE),
            TextureFormat::Rgba32 => (glow::RGBA_INTEGER, glow::UNSIGNED_INT),
            TextureFormat::R32 => (glow::RED_INTEGER, glow::INT),
        }
    }

    fn bytes_per_texel(self) -> usize {
        match self {
            TextureFormat::Rgba8 | TextureFormat::R32 => 4,
            TextureFormat::Rgba32 => 16,
        }
    }
}

/// A 2-D texture of one level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Texture {
    raw: glow::Texture,
    pub format: TextureFormat,
    pub width: u32,
    pub height: u32,
}

/// How glReadPixels reads an RGBA8UI framebuffer. OpenGL ES 3.0 only promises
/// RGBA_INTEGER with UNSIGNED_INT (four bytes per channel) for integer
/// colour buffers; most drivers also offer UNSIGNED_BYTE, a quarter the size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rgba8Readback {
    Bytes,
    Words,
}

/// The GL context's state this backend keeps.
pub(super) struct Gpu {
    gl: glow::Context,
    programs: HashMap<ProgramId, glow::Program>,
    /// Every texture created in the current job, in use or not.
    job_textures: Vec<glow::Texture>,
    /// Released textures of the current job, oldest first.
    free_textures: Vec<Texture>,
    framebuffer: glow::Framebuffer,
    /// Bound for every draw: OpenGL ES 3.0 allows the default vertex array,
    /// but some drivers draw nothing without one.
    vertex_array: glow::VertexArray,
    rgba8_readback: Rgba8Readback,
    /// GL_MAX_TEXTURE_SIZE.
    pub max_texture_size: u32,
    /// GL_RENDERER.
    pub renderer: String,
    /// GL_VERSION.
    pub version: String,
}

impl std::fmt::Debug for Gpu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gpu")
            .field("renderer", &self.renderer)
            .field("version", &self.version)
            .field("max_texture_size", &self.max_texture_size)
            .field("programs", &self.programs.len())
            .field("job_textures", &self.job_textures.len())
            .finish_non_exhaustive()
    }
}

type GetString = unsafe extern "system" fn(u32) -> *const c_char;

impl Gpu {
    /// Loads GL through `context` (current on this thread) and checks that it
    /// is OpenGL ES 3 with the sizes the backend relies on.
    pub fn new(context: &HeadlessContext) -> Result<Gpu, GlesUnavailable> {
        // glow panics on a context whose GL_VERSION it cannot read, so read
        // it first through the raw entry point.
        let get_string = context.gl_function("glGetString");
        if get_string.is_null() {
            return Err(GlesUnavailable::Unsuitable("no glGetString".into()));
        }
        // SAFETY: glGetString has this signature in every GL; the pointer
        // came from the loader for that name.
        let get_string: GetString = unsafe { std::mem::transmute::<*const c_void, GetString>(get_string) };
        // SAFETY: the context is current on this thread; GL_VERSION is a
        // valid name, and the result is null or a static NUL-terminated string.
        let version = unsafe { get_string(glow::VERSION) };
        if version.is_null() {
            return Err(GlesUnavailable::Unsuitable("glGetString(GL_VERSION) failed".into()));
        }
        // SAFETY: non-null, NUL-terminated, owned by the GL implementation.
        let version = unsafe { CStr::from_ptr(version) }.to_string_lossy().into_owned();
        let major = version
            .strip_prefix("OpenGL ES ")
            .and_then(|v| v.split('.').next())
            .and_then(|m| m.parse::<u32>().ok())
            .ok_or_else(|| GlesUnavailable::Unsuitable(format!("GL_VERSION {version:?} is not OpenGL ES")))?;
        if major < 3 {
            return Err(GlesUnavailable::Unsuitable(format!("GL_VERSION {version:?} is older than OpenGL ES 3.0")));
        }
        // SAFETY: the context is current on this thread and is OpenGL ES 3,
        // and the loader returns the entry points of that context.
        let gl = unsafe { glow::Context::from_loader_function(|name| context.gl_function(name)) };
        // SAFETY: plain queries and object creation on the current context.
        let (renderer, max_texture_size, framebuffer, vertex_array) = unsafe {
            let renderer = gl.get_parameter_string(glow::RENDERER);
            let max_texture_size = gl.get_parameter_i32(glow::MAX_TEXTURE_SIZE).max(0) as u32;
            let framebuffer = gl.create_framebuffer().map_err(GlesUnavailable::Unsuitable)?;
            let vertex_array = gl.create_vertex_array().map_err(GlesUnavailable::Unsuitable)?;
            (renderer, max_texture_size, framebuffer, vertex_array)
        };
        if max_texture_size < GLES3_MIN_TEXTURE_SIZE {
            return Err(GlesUnavailable::Unsuitable(format!(
                "GL_MAX_TEXTURE_SIZE is {max_texture_size}, below OpenGL ES 3.0's minimum of {GLES3_MIN_TEXTURE_SIZE}"
            )));
        }
        let mut gpu = Gpu {
            gl,
            programs: HashMap::new(),
            job_textures: Vec::new(),
            free_textures: Vec::new(),
            framebuffer,
            vertex_array,
            rgba8_readback: Rgba8Readback::Words,
            max_texture_size,
            renderer,
            version,
        };
        gpu.rgba8_readback = gpu.probe_rgba8_readback().map_err(|e| GlesUnavailable::Unsuitable(e.to_string()))?;
        gpu.end_job();
        Ok(gpu)
    }

    /// Asks the driver which read-back format it prefers for RGBA8UI.
    fn probe_rgba8_readback(&mut self) -> Result<Rgba8Readback, ComputeError> {
        let probe = self.texture(TextureFormat::Rgba8, 1, 1)?;
        self.attach(&[probe])?;
        // SAFETY: queries on the current context, with a complete framebuffer bound.
        let (format, kind) = unsafe {
            (
                self.gl.get_parameter_i32(glow::IMPLEMENTATION_COLOR_READ_FORMAT) as u32,
                self.gl.get_parameter_i32(glow::IMPLEMENTATION_COLOR_READ_TYPE) as u32,
            )
        };
        self.check("querying the read-back format")?;
        Ok(if (format, kind) == (glow::RGBA_INTEGER, glow::UNSIGNED_BYTE) {
            Rgba8Readback::Bytes
        } else {
            Rgba8Readback::Words
        })
    }

    /// Errs with the pending GL error, if there is one.
    pub fn check(&self, doing: &str) -> Result<(), ComputeError> {
        // SAFETY: glGetError on the current context.
        let error = unsafe { self.gl.get_error() };
        if error == glow::NO_ERROR {
            return Ok(());
        }
        let name = match error {
            glow::INVALID_ENUM => "GL_INVALID_ENUM",
            glow::INVALID_VALUE => "GL_INVALID_VALUE",
            glow::INVALID_OPERATION => "GL_INVALID_OPERATION",
            glow::INVALID_FRAMEBUFFER_OPERATION => "GL_INVALID_FRAMEBUFFER_OPERATION",
            glow::OUT_OF_MEMORY => "GL_OUT_OF_MEMORY",
            _ => "unknown GL error",
        };
        Err(device_error(format!("{doing}: {name} (0x{error:04x})")))
    }

    /// A `width × height` texture, reused from this job's released ones
    /// where one fits.
    pub fn texture(&mut self, format: TextureFormat, width: u32, height: u32) -> Result<Texture, ComputeError> {
        if let Some(i) =
            self.free_textures.iter().position(|t| t.format == format && t.width == width && t.height == height)
        {
            return Ok(self.free_textures.remove(i));
        }
        if width == 0 || height == 0 || width > self.max_texture_size || height > self.max_texture_size {
            return Err(device_error(format!(
                "a {width}x{height} texture does not fit GL_MAX_TEXTURE_SIZE {}",
                self.max_texture_size
            )));
        }
        // SAFETY: object creation and state setting on the current context;
        // the sizes were checked against the context's limit.
        let raw = unsafe {
            let raw = self.gl.create_texture().map_err(device_error)?;
            self.job_textures.push(raw);
            self.gl.bind_texture(glow::TEXTURE_2D, Some(raw));
            self.gl.tex_storage_2d(glow::TEXTURE_2D, 1, format.internal_format(), width as i32, height as i32);
            // An integer texture is incomplete (reads as zero) with a linear
            // filter, and the default minifying filter is linear.
            self.gl.tex_parameter_i32(glow::TEXTURE_2D, glow::TEXTURE_MIN_FILTER, glow::NEAREST as i32);
            self.gl.tex_parameter_i32(glow::TEXTURE_2D, glow::TEXTURE_MAG_FILTER, glow::NEAREST as i32);
            self.gl.bind_texture(glow::TEXTURE_2D, None);
            raw
        };
        self.check(&format!("allocating a {width}x{height} texture"))?;
        Ok(Texture { raw, format, width, height })
    }

    /// Gives a texture back for reuse within this job.
    pub fn release(&mut self, texture: Texture) {
        self.free_textures.push(texture);
        if self.free_textures.len() > FREE_TEXTURES_KEPT {
            let oldest = self.free_textures.remove(0);
            self.delete_texture(oldest.raw);
        }
    }

    fn delete_texture(&mut self, raw: glow::Texture) {
        self.job_textures.retain(|t| *t != raw);
        // SAFETY: the texture was created on this context and is no longer used.
        unsafe { self.gl.delete_texture(raw) };
    }

    /// Deletes every texture of the job, released or not.
    pub fn end_job(&mut self) {
        self.free_textures.clear();
        for raw in std::mem::take(&mut self.job_textures) {
            // SAFETY: created on this context; the job that used it is over.
            unsafe { self.gl.delete_texture(raw) };
        }
        // A GL error left by a failed job must not be blamed on the next one.
        // SAFETY: glGetError on the current context.
        while unsafe { self.gl.get_error() } != glow::NO_ERROR {}
    }

    /// Fills the whole of `texture` from `data`, laid out row by row in the
    /// texture's own format.
    pub fn upload<T: bytemuck::Pod>(&mut self, texture: &Texture, data: &[T]) -> Result<(), ComputeError> {
        let bytes: &[u8] = bytemuck::cast_slice(data);
        let expected = texture.width as usize * texture.height as usize * texture.format.bytes_per_texel();
        if bytes.len() != expected {
            return Err(device_error(format!(
                "upload of {} bytes into a {}x{} {:?} texture of {expected} bytes",
                bytes.len(),
                texture.width,
                texture.height,
                texture.format
            )));
        }
        let (format, kind) = texture.format.transfer();
        // SAFETY: the buffer holds exactly the texels the call reads (checked
        // above), with tightly packed rows (alignment 1, no row length).
        unsafe {
            self.gl.pixel_store_i32(glow::UNPACK_ALIGNMENT, 1);
            self.gl.bind_texture(glow::TEXTURE_2D, Some(texture.raw));
            self.gl.tex_sub_image_2d(
                glow::TEXTURE_2D,
                0,
                0,
                0,
                texture.width as i32,
                texture.height as i32,
                format,
                kind,
                glow::PixelUnpackData::Slice(Some(bytes)),
            );
            self.gl.bind_texture(glow::TEXTURE_2D, None);
        }
        self.check("uploading a texture")
    }

    /// Fills an RGBA8 `texture` with the pixels of `image` in the rectangle
    /// at (`x`, `y`) of the texture's size.
    pub fn upload_image_rect(&mut self, texture: &Texture, image: &Image, x: u32, y: u32) -> Result<(), ComputeError> {
        if texture.format != TextureFormat::Rgba8
            || u64::from(x) + u64::from(texture.width) > u64::from(image.width())
            || u64::from(y) + u64::from(texture.height) > u64::from(image.height())
        {
            return Err(device_error(format!(
                "a {}x{} {:?} texture cannot take the rectangle at {x},{y} of a {}x{} image",
                texture.width,
                texture.height,
                texture.format,
                image.width(),
                image.height()
            )));
        }
        // SAFETY: the rectangle lies inside the image (checked above), and
        // the unpack state describes the image's rows: the call reads only
        // inside `image.pixels()`. The state is reset afterwards.
        unsafe {
            self.gl.pixel_store_i32(glow::UNPACK_ALIGNMENT, 1);
            self.gl.pixel_store_i32(glow::UNPACK_ROW_LENGTH, image.width() as i32);
            self.gl.pixel_store_i32(glow::UNPACK_SKIP_PIXELS, x as i32);
            self.gl.pixel_store_i32(glow::UNPACK_SKIP_ROWS, y as i32);
            self.gl.bind_texture(glow::TEXTURE_2D, Some(texture.raw));
            self.gl.tex_sub_image_2d(
                glow::TEXTURE_2D,
                0,
                0,
                0,
                texture.width as i32,
                texture.height as i32,
                glow::RGBA_INTEGER,
                glow::UNSIGNED_BYTE,
                glow::PixelUnpackData::Slice(Some(image.pixels())),
            );
            self.gl.bind_texture(glow::TEXTURE_2D, None);
            self.gl.pixel_store_i32(glow::UNPACK_ROW_LENGTH, 0);
            self.gl.pixel_store_i32(glow::UNPACK_SKIP_PIXELS, 0);
            self.gl.pixel_store_i32(glow::UNPACK_SKIP_ROWS, 0);
        }
        self.check("uploading an image")
    }

    /// The pixels of an RGBA8 texture, rows packed.
    pub fn read_rgba8(&mut self, texture: &Texture) -> Result<Vec<u8>, ComputeError> {
        if texture.format != TextureFormat::Rgba8 {
            return Err(device_error(format!("reading a {:?} texture as pixels", texture.format)));
        }
        self.attach(&[*texture])?;
        let (width, height) = (texture.width as usize, texture.height as usize);
        let mut pixels = vec![0u8; width * height * 4];
        match self.rgba8_readback {
            Rgba8Readback::Bytes => {
                // SAFETY: the buffer holds width × height RGBA bytes, exactly
                // what the read writes with pack alignment 1.
                unsafe {
                    self.gl.pixel_store_i32(glow::PACK_ALIGNMENT, 1);
                    self.gl.read_pixels(
                        0,
                        0,
                        width as i32,
                        height as i32,
                        glow::RGBA_INTEGER,
                        glow::UNSIGNED_BYTE,
                        glow::PixelPackData::Slice(Some(&mut pixels)),
                    );
                }
            }
            Rgba8Readback::Words => {
                let mut words = vec![0u32; width * height * 4];
                // SAFETY: the buffer holds width × height × 4 words, exactly
                // what the read writes.
                unsafe {
                    self.gl.pixel_store_i32(glow::PACK_ALIGNMENT, 4);
                    self.gl.read_pixels(
                        0,
                        0,
                        width as i32,
                        height as i32,
                        glow::RGBA_INTEGER,
                        glow::UNSIGNED_INT,
                        glow::PixelPackData::Slice(Some(bytemuck::cast_slice_mut(&mut words))),
                    );
                }
                // Every channel was written from a byte, so none is over 255.
                for (p, w) in pixels.iter_mut().zip(&words) {
                    *p = *w as u8;
                }
            }
        }
        self.check("reading pixels back")?;
        Ok(pixels)
    }

    /// One texel of an RGBA32 texture.
    pub fn read_rgba32_texel(&mut self, texture: &Texture, x: u32, y: u32) -> Result<[u32; 4], ComputeError> {
        if texture.format != TextureFormat::Rgba32 || x >= texture.width || y >= texture.height {
            return Err(device_error(format!(
                "reading texel {x},{y} of a {}x{} {:?} texture as words",
                texture.width, texture.height, texture.format
            )));
        }
        self.attach(&[*texture])?;
        let mut texel = [0u32; 4];
        // SAFETY: the buffer holds one RGBA32UI texel, exactly what a 1×1
        // read of RGBA_INTEGER / UNSIGNED_INT writes.
        unsafe {
            self.gl.pixel_store_i32(glow::PACK_ALIGNMENT, 4);
            self.gl.read_pixels(
                x as i32,
                y as i32,
                1,
                1,
                glow::RGBA_INTEGER,
                glow::UNSIGNED_INT,
                glow::PixelPackData::Slice(Some(bytemuck::cast_slice_mut(&mut texel))),
            );
        }
        self.check("reading words back")?;
        Ok(texel)
    }

    /// Binds the framebuffer with `targets` as colour attachments 0, 1, ….
    fn attach(&mut self, targets: &[Texture]) -> Result<(), ComputeError> {
        const ATTACHMENTS: [u32; 2] = [glow::COLOR_ATTACHMENT0, glow::COLOR_ATTACHMENT1];
        if targets.is_empty() || targets.len() > ATTACHMENTS.len() {
            return Err(device_error(format!("{} render targets (1 or 2 supported)", targets.len())));
        }
        // SAFETY: state setting on the current context, with textures of
        // this context.
        let status = unsafe {
            self.gl.bind_framebuffer(glow::FRAMEBUFFER, Some(self.framebuffer));
            for (i, attachment) in ATTACHMENTS.iter().enumerate() {
                let texture = targets.get(i).map(|t| t.raw);
                self.gl.framebuffer_texture_2d(glow::FRAMEBUFFER, *attachment, glow::TEXTURE_2D, texture, 0);
            }
            self.gl.draw_buffers(&ATTACHMENTS[..targets.len()]);
            self.gl.read_buffer(glow::COLOR_ATTACHMENT0);
            self.gl.check_framebuffer_status(glow::FRAMEBUFFER)
        };
        if status != glow::FRAMEBUFFER_COMPLETE {
            return Err(device_error(format!(
                "framebuffer incomplete (0x{status:04x}) with {:?} targets of {}x{}",
                targets[0].format, targets[0].width, targets[0].height
            )));
        }
        self.check("binding render targets")
    }

    /// Draws `program` over the rectangle of `targets` at (`x`, `y`), `width
    /// × height` pixels, and waits for it to finish (so kernel time is real
    /// and deadline checks between passes mean something).
    #[allow(clippy::too_many_arguments)]
    pub fn draw(
        &mut self,
        program: ProgramId,
        targets: &[Texture],
        x: u32,
        y: u32,
        width: u32,
        height: u32,
        set_uniforms: impl FnOnce(&mut Uniforms<'_>),
    ) -> Result<(), ComputeError> {
        let program = self.program(program)?;
        self.attach(targets)?;
        // SAFETY: state setting on the current context with its own program.
        unsafe {
            self.gl.use_program(Some(program));
            self.gl.viewport(x as i32, y as i32, width as i32, height as i32);
        }
        let mut uniforms = Uniforms { gl: &self.gl, program, units: 0 };
        set_uniforms(&mut uniforms);
        let units = uniforms.units;
        // SAFETY: a draw of three vertices with no attributes (the vertex
        // shader uses gl_VertexID only), then unbinding the sampled textures
        // so no later pass renders into a texture that is still bound.
        unsafe {
            self.gl.bind_vertex_array(Some(self.vertex_array));
            self.gl.draw_arrays(glow::TRIANGLES, 0, 3);
            self.gl.finish();
            for unit in 0..units {
                self.gl.active_texture(glow::TEXTURE0 + unit);
                self.gl.bind_texture(glow::TEXTURE_2D, None);
            }
            self.gl.active_texture(glow::TEXTURE0);
        }
        self.check("drawing")
    }

    /// The program, compiled and linked the first time it is asked for.
    fn program(&mut self, id: ProgramId) -> Result<glow::Program, ComputeError> {
        if let Some(program) = self.programs.get(&id) {
            return Ok(*program);
        }
        let vertex = self.compile(glow::VERTEX_SHADER, &ProgramId::vertex_source(), "fullscreen.vert")?;
        let fragment = match self.compile(glow::FRAGMENT_SHADER, &id.fragment_source(), &format!("{id:?}")) {
            Ok(fragment) => fragment,
            Err(e) => {
                // SAFETY: a shader of this context, used by no program.
                unsafe { self.gl.delete_shader(vertex) };
                return Err(e);
            }
        };
        // SAFETY: program creation and linking on the current context; the
        // shaders are deleted once the program holds them.
        let linked = unsafe {
            let program = self.gl.create_program().map_err(device_error)?;
            self.gl.attach_shader(program, vertex);
            self.gl.attach_shader(program, fragment);
            self.gl.link_program(program);
            self.gl.detach_shader(program, vertex);
            self.gl.detach_shader(program, fragment);
            self.gl.delete_shader(vertex);
            self.gl.delete_shader(fragment);
            if self.gl.get_program_link_status(program) {
                Ok(program)
            } else {
                let log = self.gl.get_program_info_log(program);
                self.gl.delete_program(program);
                Err(device_error(format!("linking {id:?}: {log}")))
            }
        }?;
        self.programs.insert(id, linked);
        Ok(linked)
    }

    fn compile(&mut self, kind: u32, source: &str, name: &str) -> Result<glow::Shader, ComputeError> {
        // SAFETY: shader creation and compilation on the current context.
        unsafe {
            let shader = self.gl.create_shader(kind).map_err(device_error)?;
            self.gl.shader_source(shader, source);
            self.gl.compile_shader(shader);
            if self.gl.get_shader_compile_status(shader) {
                Ok(shader)
            } else {
                let log = self.gl.get_shader_info_log(shader);
                self.gl.delete_shader(shader);
                Err(device_error(format!("compiling {name}: {log}")))
            }
        }
    }
}

/// Sets the uniforms of the program about to draw. A uniform the compiler
/// optimised away has no location, and setting it does nothing.
pub(super) struct Uniforms<'a> {
    gl: &'a glow::Context,
    program: glow::Program,
    /// Texture units bound so far.
    units: u32,
}

impl Uniforms<'_> {
    fn location(&self, name: &str) -> Option<glow::UniformLocation> {
        // SAFETY: a query on the program in use.
        unsafe { self.gl.get_uniform_location(self.program, name) }
    }

    pub fn int(&mut self, name: &str, value: i32) {
        let location = self.location(name);
        // SAFETY: sets a uniform of the program in use.
        unsafe { self.gl.uniform_1_i32(location.as_ref(), value) };
    }

    pub fn uint(&mut self, name: &str, value: u32) {
        let location = self.location(name);
        // SAFETY: sets a uniform of the program in use.
        unsafe { self.gl.uniform_1_u32(location.as_ref(), value) };
    }

    pub fn ivec2(&mut self, name: &str, [x, y]: [i32; 2]) {
        let location = self.location(name);
        // SAFETY: sets a uniform of the program in use.
        unsafe { self.gl.uniform_2_i32(location.as_ref(), x, y) };
    }

    pub fn ivec3(&mut self, name: &str, [x, y, z]: [i32; 3]) {
        let location = self.location(name);
        // SAFETY: sets a uniform of the program in use.
        unsafe { self.gl.uniform_3_i32(location.as_ref(), x, y, z) };
    }

    pub fn uvec2(&mut self, name: &str, [x, y]: [u32; 2]) {
        let location = self.location(name);
        // SAFETY: sets a uniform of the program in use.
        unsafe { self.gl.uniform_2_u32(location.as_ref(), x, y) };
    }

    pub fn uvec4(&mut self, name: &str, [x, y, z, w]: [u32; 4]) {
        let location = self.location(name);
        // SAFETY: sets a uniform of the program in use.
        unsafe { self.gl.uniform_4_u32(location.as_ref(), x, y, z, w) };
    }

    /// Binds `texture` to the next texture unit and points sampler `name` at it.
    pub fn sampler(&mut self, name: &str, texture: &Texture) {
        let unit = self.units;
        self.units += 1;
        let location = self.location(name);
        // SAFETY: binds a texture of this context and sets a sampler uniform
        // of the program in use.
        unsafe {
            self.gl.active_texture(glow::TEXTURE0 + unit);
            self.gl.bind_texture(glow::TEXTURE_2D, Some(texture.raw));
            self.gl.uniform_1_i32(location.as_ref(), unit as i32);
        }
    }
}
