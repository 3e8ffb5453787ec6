fn main() {
    println!("cargo:rerun-if-changed=wimpy.capnp");
    capnpc::CompilerCommand::new()
        .file("wimpy.capnp")
        .run()
        .expect("compiling schema/wimpy.capnp (is the capnp compiler installed? scripts/setup installs it)");
}
