fn main() {
    println!("cargo:rerun-if-changed=wimpy.capnp");
    let out = std::path::PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    capnpc::CompilerCommand::new()
        .file("wimpy.capnp")
        // The compiler's view of the schema, doc comments included, for the
        // test that every declaration is documented where Cap'n Proto
        // attaches documentation.
        .raw_code_generator_request_path(out.join("wimpy_capnp_request.bin"))
        .run()
        .expect("compiling schema/wimpy.capnp (is the capnp compiler installed? scripts/setup installs it)");
}
