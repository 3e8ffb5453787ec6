//! The wgpu backend (WGSL compute shaders).
