//! The checked-in C header must equal what cbindgen generates from the
//! current sources. `ENTROPIX_BLESS=1` rewrites it instead of failing.

use std::path::Path;

/// `TopKParams` -> `entropix_top_k_params`.
fn c_name(rust: &str) -> String {
    let mut out = String::from("entropix_");
    for (i, ch) in rust.chars().enumerate() {
        if ch.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(ch.to_ascii_lowercase());
        } else {
            out.push(ch);
        }
    }
    out
}

/// Names of all `pub struct XxxParams` and `pub enum` items exported to C
/// (marked `#[repr(C)]`) under `src/`.
fn repr_c_types(dir: &Path, out: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            repr_c_types(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path).unwrap();
            let mut after_repr = false;
            for line in text.lines().map(str::trim) {
                if line.starts_with("#[repr(C") {
                    after_repr = true;
                    continue;
                }
                if after_repr && (line.starts_with("pub struct ") || line.starts_with("pub enum ")) {
                    let name: String = line.split_whitespace().nth(2).unwrap().chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                    out.push(name);
                    after_repr = false;
                } else if !line.starts_with("#[") && !line.starts_with("///") {
                    after_repr = false;
                }
            }
        }
    }
}

#[test]
fn header_is_up_to_date() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut config = cbindgen::Config::from_file(root.join("cbindgen.toml")).unwrap();
    let mut types = Vec::new();
    repr_c_types(&root.join("src"), &mut types);
    for t in types {
        if t != "TokenData" {
            let c = c_name(t.trim_end_matches("Params")) + if t.ends_with("Params") { "_params" } else { "" };
            config.export.rename.insert(t, c);
        }
    }
    config.export.rename.insert("TokenData".into(), "llama_token_data".into());
    let mut generated = Vec::new();
    cbindgen::Builder::new().with_crate(root).with_config(config).generate().expect("cbindgen runs").write(&mut generated);
    // Rustdoc links (`[`X`]`, `[`super::X`]`) read as plain code in C.
    let generated = String::from_utf8(generated).unwrap().replace("[`", "`").replace("`]", "`").replace("`super::", "`").replace("`crate::", "`");
    let path = root.join("include/entropix_sampler.h");
    if std::env::var_os("ENTROPIX_BLESS").is_some() {
        std::fs::write(&path, &generated).unwrap();
        return;
    }
    let current = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        current == generated,
        "include/entropix_sampler.h is stale: run `ENTROPIX_BLESS=1 cargo test --release --test header` and commit it"
    );
}
