//! The OpenGL ES 3.0 backend (glow + khronos-egl, headless EGL).
