//! Threshold profiles made on first use: a model with no `--profile` and no
//! profile shipped in `profiles/` gets one from a short calibration (8
//! prompts x 32 tokens, a few seconds), cached next to the default model,
//! instead of thresholds made for another model and read in its units.

use std::path::PathBuf;

use entropix_sampler::default_model::cache_dir;
use entropix_sampler::llama::Model;

use crate::args::Args;

/// Prompts of the automatic calibration (the first of
/// `profiles/calibration-prompts.txt`).
const AUTO_PROMPTS: usize = 8;
/// Tokens generated per prompt.
const AUTO_TOKENS: i32 = 32;

/// Where the automatic profile of `model` is cached: the file name and the
/// file size (a different file of the same name gets its own).
pub fn cached_path(model: &Model) -> PathBuf {
    let name = model.path().file_name().map_or_else(|| "model".to_string(), |n| n.to_string_lossy().into_owned());
    let size = std::fs::metadata(model.path()).map_or(0, |m| m.len());
    cache_dir().join("profiles").join(format!("{}-{size}.json", name.trim_end_matches(".gguf")))
}

/// Makes the cached profile when `args` asks for an entropix-family
/// sampler with the default settings (no `--profile`, no `--preset
/// reference`) and no shipped profile exists for the model.
pub fn ensure(args: &Args, model: &Model) -> Result<(), String> {
    let wants = (args.sampler == "entropix" || args.sampler == "four-mode") && args.profile.is_none() && !args.reference_preset();
    if !wants || crate::chain_builder::shipped_profile(model).is_some() {
        return Ok(());
    }
    let path = cached_path(model);
    if path.is_file() {
        return Ok(());
    }
    if !args.quiet {
        eprintln!("entropix: no threshold profile for this model: calibrating on {AUTO_PROMPTS} prompts (once; cached in {})", path.display());
    }
    let prompts: Vec<String> = crate::read_prompt_set(None)?.into_iter().take(AUTO_PROMPTS).collect();
    let mut cal_args = args.clone();
    // A fixed seed: the same model gets the same profile.
    cal_args.seed = 1;
    let mut profile = crate::calibrate_profile(&cal_args, model, &prompts, AUTO_TOKENS, true)?;
    profile.description = Some(format!("made automatically on first use: {}", profile.description.unwrap_or_default()));
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    // Written whole, then renamed: a concurrent run never reads half a file.
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    profile.save(&tmp).map_err(|e| e.to_string())?;
    std::fs::rename(&tmp, &path).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(())
}
