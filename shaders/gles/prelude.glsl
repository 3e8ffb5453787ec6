#version 300 es
// The first part of every wimpy GLES program. GLSL ES has no #include, so the
// backend joins a program from parts: this file, then the shared helpers the
// program needs (image_common.glsl, blake3_common.glsl, sha256_common.glsl),
// then the program's own .vert or .frag file.
//
// Everything is integer arithmetic. highp int and uint are exactly 32 bits in
// GLSL ES 3.00 fragment shaders, with wrapping overflow and sign-extending
// right shifts of signed values, which is what the Rust definitions compute.
precision highp float;
precision highp int;
precision highp usampler2D;
precision highp isampler2D;
