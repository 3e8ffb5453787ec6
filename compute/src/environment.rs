//! The process environment the GPU stacks read, set up by a binary's `main`
//! before any thread starts.

use std::path::Path;

/// Gives the process a private XDG runtime directory, `dir`, when it has
/// no usable one; returns whether it did.
///
/// Mesa's Vulkan device-select layer asks libwayland for a compositor each
/// time wgpu lists adapters, and without `XDG_RUNTIME_DIR` libwayland prints
/// `error: XDG_RUNTIME_DIR is invalid or not set in the environment.` for
/// every probe, which reads as a failure to anyone starting a headless
/// worker. In an empty private directory the probe finds no compositor, as
/// it would anyway, and says nothing.
///
/// # Safety
///
/// Sets an environment variable, so no other thread may be running (or
/// reading the environment) meanwhile: call it first thing in `main`.
pub unsafe fn use_private_runtime_dir(dir: &Path) -> std::io::Result<bool> {
    // libwayland accepts any absolute path and complains about anything else.
    if std::env::var_os("XDG_RUNTIME_DIR").is_some_and(|d| Path::new(&d).is_absolute()) {
        return Ok(false);
    }
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    // The XDG spec asks for 0700, whatever the directory held before.
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    let dir = std::path::absolute(dir)?;
    // SAFETY: the caller guarantees that no other thread runs.
    unsafe { std::env::set_var("XDG_RUNTIME_DIR", dir) };
    Ok(true)
}
