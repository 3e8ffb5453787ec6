//! The schema as the Cap'n Proto compiler sees it: every type, constant and
//! method that a reader in another language meets carries documentation,
//! attached where Cap'n Proto attaches it (after the declaration).

use std::collections::HashMap;

use capnp::schema_capnp::{code_generator_request, node};

/// The compiler's request for `wimpy.capnp`, written by build.rs.
const REQUEST: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/wimpy_capnp_request.bin"));

#[test]
fn every_type_constant_and_method_is_documented() {
    let message = capnp::serialize::read_message(&mut &REQUEST[..], capnp::message::ReaderOptions::new()).unwrap();
    let request = message.get_root::<code_generator_request::Reader<'_>>().unwrap();
    let info: HashMap<u64, _> = request.get_source_info().unwrap().iter().map(|i| (i.get_id(), i)).collect();
    let documented = |text: Option<capnp::Result<capnp::text::Reader<'_>>>| {
        text.and_then(|t| t.ok()).and_then(|t| t.to_str().ok()).is_some_and(|t| !t.trim().is_empty())
    };
    let mut undocumented = Vec::new();
    let mut seen = 0;
    for n in request.get_nodes().unwrap() {
        let name = n.get_display_name().unwrap().to_str().unwrap().to_owned();
        // Parameter and result structs ("Worker.get$Params") are documented
        // by their method, groups by their field; the file by its header.
        let Some(local) = name.strip_prefix("wimpy.capnp:") else { continue };
        if local.contains('$') {
            continue;
        }
        let source = info.get(&n.get_id());
        let own_doc = documented(source.map(|s| s.get_doc_comment()));
        match n.which().unwrap() {
            node::Struct(s) if s.get_is_group() => continue,
            node::Struct(_) | node::Enum(_) | node::Const(_) => {}
            node::Interface(i) => {
                let members = source.and_then(|s| s.get_members().ok());
                for (k, method) in i.get_methods().unwrap().iter().enumerate() {
                    let doc = members.map(|m| m.get(k as u32).get_doc_comment());
                    if !documented(doc) {
                        undocumented.push(format!("{local}.{}", method.get_name().unwrap().to_str().unwrap()));
                    }
                }
            }
            _ => continue,
        }
        seen += 1;
        if !own_doc {
            undocumented.push(local.to_owned());
        }
    }
    assert!(seen > 30, "only {seen} declarations read: is this the wimpy schema?");
    assert!(undocumented.is_empty(), "no doc comment where Cap'n Proto looks for one: {undocumented:?}");
}
