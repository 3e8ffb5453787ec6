//! A headless OpenGL ES 3 context through EGL: no window, no X or Wayland.
//!
//! libEGL is loaded at run time (khronos-egl's `dynamic` feature), so a
//! worker on a machine without it starts anyway and simply has no `gles`
//! backend. Displays are tried in order: Mesa's surfaceless platform (what a
//! headless Raspberry Pi or a CI machine with llvmpipe has), then each device
//! of EGL_EXT_platform_device (headless NVIDIA and friends), then the default
//! display. The context is made current without a surface where
//! EGL_KHR_surfaceless_context allows it, otherwise on a 1×1 pbuffer.
//!
//! The EGLDisplay is one per process and shared by every context on it: it is
//! initialised by whoever comes first (initialising it again is a no-op) and
//! never terminated, because eglTerminate would pull it from under the
//! contexts of other threads.
//!
//! For the same reason libEGL and libGLESv2 are loaded once per process and
//! never unloaded ([`libraries`]). The display keeps the driver's own
//! threads (llvmpipe's rasterisers, shader compilers) for as long as it
//! lives, which is the life of the process; unloading libEGL when a context
//! is dropped unloads the driver under those threads, and they then jump
//! into unmapped code.

use std::ffi::c_void;
use std::sync::OnceLock;

use khronos_egl as egl;

use super::GlesUnavailable;

type Egl = egl::DynamicInstance<egl::EGL1_4>;

/// EGL_PLATFORM_SURFACELESS_MESA (EGL_MESA_platform_surfaceless).
const PLATFORM_SURFACELESS_MESA: egl::Enum = 0x31DD;
/// EGL_PLATFORM_DEVICE_EXT (EGL_EXT_platform_device).
const PLATFORM_DEVICE_EXT: egl::Enum = 0x313F;
/// Devices asked of eglQueryDevicesEXT; a machine has a handful at most.
const MAX_DEVICES: usize = 16;

type GetPlatformDisplayExt = unsafe extern "system" fn(egl::Enum, *mut c_void, *const egl::Int) -> *mut c_void;
type QueryDevicesExt = unsafe extern "system" fn(egl::Int, *mut *mut c_void, *mut egl::Int) -> egl::Boolean;

/// The process's libEGL and libGLESv2.
struct Libraries {
    egl: Egl,
    /// libGLESv2, for GL entry points eglGetProcAddress does not return (it
    /// need not return core functions before EGL 1.5).
    gles: Option<libloading::Library>,
}

/// libEGL and libGLESv2, loaded by the first context and kept until the
/// process exits: a static is never dropped, so they are never unloaded.
fn libraries() -> Result<&'static Libraries, GlesUnavailable> {
    static LIBRARIES: OnceLock<Result<Libraries, String>> = OnceLock::new();
    LIBRARIES
        .get_or_init(|| {
            // SAFETY: libEGL.so.1 is the system's EGL (glvnd's dispatcher or a
            // vendor's); its initialisers expect to run in any process that
            // loads it, and load_required checks that every EGL 1.4 symbol is
            // present.
            let egl = unsafe { Egl::load_required() }.map_err(|e| e.to_string())?;
            // SAFETY: libGLESv2 is the system's GLES library; loading it runs
            // no code beyond its initialisers, and it is only used through GL
            // entry points looked up by name.
            let gles = unsafe { libloading::Library::new("libGLESv2.so.2") }.ok();
            Ok(Libraries { egl, gles })
        })
        .as_ref()
        .map_err(|e| GlesUnavailable::NoLibrary(e.clone()))
}

/// An OpenGL ES 3 context, current on the thread that made it.
pub(super) struct HeadlessContext {
    egl: &'static Egl,
    display: egl::Display,
    context: egl::Context,
    /// The 1×1 pbuffer the context is current on, where the display cannot
    /// make a context current without a surface.
    surface: Option<egl::Surface>,
    /// libGLESv2, where the GL entry points EGL does not give out are.
    gles_library: Option<&'static libloading::Library>,
    /// Which display worked, for error messages and the device string.
    pub platform: String,
}

impl std::fmt::Debug for HeadlessContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeadlessContext")
            .field("platform", &self.platform)
            .field("display", &self.display)
            .field("context", &self.context)
            .field("surface", &self.surface)
            .finish_non_exhaustive()
    }
}

impl HeadlessContext {
    /// Loads libEGL and makes an OpenGL ES 3 context current on this thread.
    pub fn new() -> Result<HeadlessContext, GlesUnavailable> {
        let libraries = libraries()?;
        let egl = &libraries.egl;
        let client_extensions = egl
            .query_string(None, egl::EXTENSIONS)
            .map(|s| s.to_string_lossy().into_owned())
            // EGL before 1.5 without EGL_EXT_client_extensions has no client
            // extension string: only the default display is on offer.
            .unwrap_or_default();
        let mut failures = Vec::new();
        for (platform, display) in candidate_displays(egl, &client_extensions, &mut failures) {
            match open_context(egl, display) {
                Ok((context, surface)) => {
                    let gles_library = libraries.gles.as_ref();
                    return Ok(HeadlessContext { egl, display, context, surface, gles_library, platform });
                }
                Err(reason) => failures.push(format!("{platform}: {reason}")),
            }
        }
        if failures.is_empty() {
            failures.push("EGL offers no display".into());
        }
        Err(GlesUnavailable::NoContext(failures.join("; ")))
    }

    /// Makes this context current on this thread, if another one is.
    pub fn make_current(&self) -> Result<(), String> {
        if self.egl.get_current_context() == Some(self.context) {
            return Ok(());
        }
        self.egl
            .make_current(self.display, self.surface, self.surface, Some(self.context))
            .map_err(|e| format!("eglMakeCurrent: {e}"))
    }

    /// The address of GL function `name`, or null if neither EGL nor
    /// libGLESv2 has it.
    pub fn gl_function(&self, name: &str) -> *const c_void {
        if let Some(f) = self.egl.get_proc_address(name) {
            return f as *const c_void;
        }
        let Some(library) = self.gles_library else {
            return std::ptr::null();
        };
        // SAFETY: the symbol is only read as an address (never called here);
        // glow calls it with the GL signature its name stands for, and the
        // library is never unloaded.
        unsafe { library.get::<*const c_void>(name.as_bytes()) }.map(|symbol| *symbol).unwrap_or(std::ptr::null())
    }
}

impl Drop for HeadlessContext {
    fn drop(&mut self) {
        // Nothing is left to do with a context that cannot be released
        // (destroying it frees its GL objects), but the log says so.
        let released = |what: &str, outcome: Result<(), egl::Error>| {
            if let Err(e) = outcome {
                tracing::warn!("{what} while dropping a GLES context: {e}");
            }
        };
        if self.egl.get_current_context() == Some(self.context) {
            released("eglMakeCurrent", self.egl.make_current(self.display, None, None, None));
        }
        released("eglDestroyContext", self.egl.destroy_context(self.display, self.context));
        if let Some(surface) = self.surface {
            released("eglDestroySurface", self.egl.destroy_surface(self.display, surface));
        }
        // No eglTerminate: the display is shared by every context in the
        // process (see the module comment).
    }
}

/// The displays to try, best first. Failures to even get one are recorded.
fn candidate_displays(egl: &Egl, client_extensions: &str, failures: &mut Vec<String>) -> Vec<(String, egl::Display)> {
    let has = |name: &str| client_extensions.split_ascii_whitespace().any(|e| e == name);
    let mut displays = Vec::new();
    if has("EGL_MESA_platform_surfaceless") {
        match platform_display(egl, client_extensions, PLATFORM_SURFACELESS_MESA, egl::DEFAULT_DISPLAY) {
            Ok(display) => displays.push(("surfaceless".to_string(), display)),
            Err(e) => failures.push(format!("surfaceless: {e}")),
        }
    }
    if has("EGL_EXT_platform_device") {
        match devices(egl) {
            Ok(devices) => {
                for (i, device) in devices.into_iter().enumerate() {
                    match platform_display(egl, client_extensions, PLATFORM_DEVICE_EXT, device) {
                        Ok(display) => displays.push((format!("device {i}"), display)),
                        Err(e) => failures.push(format!("device {i}: {e}")),
                    }
                }
            }
            Err(e) => failures.push(format!("devices: {e}")),
        }
    }
    // SAFETY: EGL_DEFAULT_DISPLAY is the one native display value every
    // platform accepts.
    match unsafe { egl.get_display(egl::DEFAULT_DISPLAY) } {
        Some(display) => displays.push(("default display".to_string(), display)),
        None => failures.push("default display: eglGetDisplay found none".into()),
    }
    displays
}

/// eglGetPlatformDisplay (EGL 1.5), or eglGetPlatformDisplayEXT before it.
fn platform_display(
    egl: &Egl,
    client_extensions: &str,
    platform: egl::Enum,
    native: *mut c_void,
) -> Result<egl::Display, String> {
    if let Some(egl15) = egl.upcast::<egl::EGL1_5>() {
        // SAFETY: `native` is EGL_DEFAULT_DISPLAY for the surfaceless platform
        // and an EGLDeviceEXT from eglQueryDevicesEXT for the device platform:
        // the native display each platform's extension specifies.
        return unsafe { egl15.get_platform_display(platform, native, &[egl::ATTRIB_NONE]) }
            .map_err(|e| format!("eglGetPlatformDisplay: {e}"));
    }
    if !client_extensions.split_ascii_whitespace().any(|e| e == "EGL_EXT_platform_base") {
        return Err("neither EGL 1.5 nor EGL_EXT_platform_base".into());
    }
    let f = egl.get_proc_address("eglGetPlatformDisplayEXT").ok_or("no eglGetPlatformDisplayEXT")?;
    // SAFETY: EGL_EXT_platform_base defines eglGetPlatformDisplayEXT with
    // exactly this signature.
    let get_platform_display: GetPlatformDisplayExt = unsafe { std::mem::transmute(f) };
    let attributes = [egl::NONE];
    // SAFETY: as for eglGetPlatformDisplay above; the attribute list is
    // terminated by EGL_NONE.
    let display = unsafe { get_platform_display(platform, native, attributes.as_ptr()) };
    if display.is_null() {
        return Err(format!("eglGetPlatformDisplayEXT: {}", error_name(egl)));
    }
    // SAFETY: a non-null EGLDisplay returned by EGL.
    Ok(unsafe { egl::Display::from_ptr(display) })
}

/// The EGLDeviceEXTs of EGL_EXT_device_enumeration.
fn devices(egl: &Egl) -> Result<Vec<*mut c_void>, String> {
    let f = egl.get_proc_address("eglQueryDevicesEXT").ok_or("no eglQueryDevicesEXT")?;
    // SAFETY: EGL_EXT_device_enumeration defines eglQueryDevicesEXT with
    // exactly this signature.
    let query_devices: QueryDevicesExt = unsafe { std::mem::transmute(f) };
    let mut devices = [std::ptr::null_mut(); MAX_DEVICES];
    let mut count: egl::Int = 0;
    // SAFETY: the array holds MAX_DEVICES entries, as the call is told, and
    // `count` is a valid out-pointer.
    let ok = unsafe { query_devices(MAX_DEVICES as egl::Int, devices.as_mut_ptr(), &mut count) };
    if ok != egl::TRUE {
        return Err(format!("eglQueryDevicesEXT: {}", error_name(egl)));
    }
    Ok(devices[..(count.max(0) as usize).min(MAX_DEVICES)].to_vec())
}

fn error_name(egl: &Egl) -> String {
    egl.get_error().map_or_else(|| "no error code".to_string(), |e| e.to_string())
}

/// Initialises `display` and makes an OpenGL ES 3 context current on it.
fn open_context(egl: &Egl, display: egl::Display) -> Result<(egl::Context, Option<egl::Surface>), String> {
    egl.initialize(display).map_err(|e| format!("eglInitialize: {e}"))?;
    egl.bind_api(egl::OPENGL_ES_API).map_err(|e| format!("eglBindAPI(OpenGL ES): {e}"))?;
    // Mesa's surfaceless platform matches no config unless a surface type is
    // asked for; a driver without pbuffers may match only the second.
    let wanted: [&[egl::Int]; 2] = [
        &[egl::SURFACE_TYPE, egl::PBUFFER_BIT, egl::RENDERABLE_TYPE, egl::OPENGL_ES3_BIT, egl::NONE],
        &[egl::RENDERABLE_TYPE, egl::OPENGL_ES3_BIT, egl::NONE],
    ];
    let config = wanted
        .iter()
        .find_map(|attributes| egl.choose_first_config(display, attributes).ok().flatten())
        .ok_or("no config renders OpenGL ES 3")?;
    let context = egl
        .create_context(display, config, None, &[egl::CONTEXT_CLIENT_VERSION, 3, egl::NONE])
        .map_err(|e| format!("eglCreateContext(OpenGL ES 3): {e}"))?;
    let surfaceless = egl
        .query_string(Some(display), egl::EXTENSIONS)
        .map(|s| s.to_string_lossy().split_ascii_whitespace().any(|e| e == "EGL_KHR_surfaceless_context"))
        .unwrap_or(false);
    if surfaceless && egl.make_current(display, None, None, Some(context)).is_ok() {
        return Ok((context, None));
    }
    let surface = match egl.create_pbuffer_surface(display, config, &[egl::WIDTH, 1, egl::HEIGHT, 1, egl::NONE]) {
        Ok(surface) => surface,
        Err(e) => {
            // The context is of no use: the failure that matters is the one returned.
            egl.destroy_context(display, context).ok();
            return Err(format!("no surfaceless context and no pbuffer: {e}"));
        }
    };
    if let Err(e) = egl.make_current(display, Some(surface), Some(surface), Some(context)) {
        // As above: the failure returned is the one that matters.
        egl.destroy_context(display, context).ok();
        egl.destroy_surface(display, surface).ok();
        return Err(format!("eglMakeCurrent: {e}"));
    }
    Ok((context, Some(surface)))
}
