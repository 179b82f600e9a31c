//! Checkpoints in the safetensors format (readable by Python's `safetensors` and PyTorch):
//! parameters, buffers and optimizer state as named little-endian f32 tensors, plus a
//! string-to-string metadata map. Written to a temporary file, then renamed.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use safetensors::tensor::{Dtype, SafeTensors, TensorView};

use crate::error::{EngineError, Result};
use crate::params::ParamStore;
use crate::tensor::Tensor;

/// The contents of a checkpoint file.
#[derive(Clone, Debug, Default)]
pub struct Checkpoint {
    /// Named tensors.
    pub tensors: HashMap<String, Tensor>,
    /// Free-form metadata (epoch, model name, ...).
    pub metadata: HashMap<String, String>,
}

fn ckpt_err(path: &Path, message: impl Into<String>) -> EngineError {
    EngineError::Checkpoint { path: path.to_path_buf(), message: message.into() }
}

/// Every entry of the store (parameters and buffers) under its name.
pub fn store_tensors(store: &ParamStore) -> Vec<(String, Tensor)> {
    store.ids().map(|id| (store.name(id).to_string(), store.value(id).clone())).collect()
}

/// Writes `tensors` and `metadata` to `path` atomically (temporary file, then rename), so a
/// crash never leaves a half-written checkpoint under the real name.
pub fn save(path: &Path, tensors: &[(String, Tensor)], metadata: &HashMap<String, String>) -> Result<()> {
    let bytes: Vec<Vec<u8>> =
        tensors.iter().map(|(_, t)| t.data().iter().flat_map(|v| v.to_le_bytes()).collect()).collect();
    let views = tensors
        .iter()
        .zip(&bytes)
        .map(|((name, t), b)| {
            TensorView::new(Dtype::F32, t.shape().to_vec(), b)
                .map(|v| (name.clone(), v))
                .map_err(|e| ckpt_err(path, format!("tensor {name}: {e}")))
        })
        .collect::<Result<Vec<_>>>()?;
    let meta = if metadata.is_empty() { None } else { Some(metadata.clone()) };
    let encoded =
        safetensors::tensor::serialize(views, &meta).map_err(|e| ckpt_err(path, format!("cannot encode: {e}")))?;
    let encoded = with_sorted_header(encoded).map_err(|e| ckpt_err(path, format!("cannot encode: {e}")))?;
    let tmp = temporary_sibling(path);
    let io = |error| EngineError::Io { path: tmp.clone(), error };
    std::fs::write(&tmp, encoded).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(|error| EngineError::Io { path: path.to_path_buf(), error })
}

/// Rewrites the JSON header of an encoded safetensors file with its keys in sorted order.
///
/// The crate writes the metadata map in `HashMap` order, which changes from process to
/// process; sorted keys make equal contents give equal bytes. The data offsets are relative
/// to the end of the header, so only the header and its length change.
fn with_sorted_header(encoded: Vec<u8>) -> std::result::Result<Vec<u8>, String> {
    let len_bytes: [u8; 8] = encoded.get(..8).and_then(|b| b.try_into().ok()).ok_or("no header length")?;
    let header_len = usize::try_from(u64::from_le_bytes(len_bytes)).map_err(|e| e.to_string())?;
    let header = encoded.get(8..8 + header_len).ok_or("header longer than the file")?;
    // serde_json's map is a BTreeMap (no `preserve_order` in this workspace): sorted keys.
    let value: serde_json::Value = serde_json::from_slice(header).map_err(|e| e.to_string())?;
    let mut sorted = serde_json::to_vec(&value).map_err(|e| e.to_string())?;
    // The data must start at a multiple of 8 bytes; safetensors pads with spaces.
    sorted.resize(sorted.len().div_ceil(8) * 8, b' ');
    let mut out = Vec::with_capacity(8 + sorted.len() + encoded.len() - 8 - header_len);
    out.extend_from_slice(&(sorted.len() as u64).to_le_bytes());
    out.extend_from_slice(&sorted);
    out.extend_from_slice(&encoded[8 + header_len..]);
    Ok(out)
}

fn temporary_sibling(path: &Path) -> PathBuf {
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(format!(".tmp{}", std::process::id()));
    path.with_file_name(name)
}

/// Reads a checkpoint. A truncated, corrupt or non-f32 file gives an error naming it.
pub fn load(path: &Path) -> Result<Checkpoint> {
    let bytes = std::fs::read(path).map_err(|error| EngineError::Io { path: path.to_path_buf(), error })?;
    let (_, meta) =
        SafeTensors::read_metadata(&bytes).map_err(|e| ckpt_err(path, format!("not a valid safetensors file: {e}")))?;
    let parsed =
        SafeTensors::deserialize(&bytes).map_err(|e| ckpt_err(path, format!("not a valid safetensors file: {e}")))?;
    let mut tensors = HashMap::new();
    for (name, view) in parsed.tensors() {
        if view.dtype() != Dtype::F32 {
            return Err(ckpt_err(path, format!("tensor {name}: expected dtype F32, found {:?}", view.dtype())));
        }
        let data = view.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        let t = Tensor::from_vec(view.shape(), data).map_err(|e| ckpt_err(path, format!("tensor {name}: {e}")))?;
        tensors.insert(name, t);
    }
    Ok(Checkpoint { tensors, metadata: meta.metadata().clone().unwrap_or_default() })
}

/// True when both shapes hold a single value as a 0-d or a `[1]` tensor: older checkpoints
/// stored the spherization scalars as `[1]`, PyTorch holds them 0-d.
pub fn one_value_each(a: &[usize], b: &[usize]) -> bool {
    let single = |s: &[usize]| s.is_empty() || s == [1];
    single(a) && single(b)
}

/// Copies every store entry from the checkpoint; each must be present with the same shape.
pub fn restore_store(path: &Path, ckpt: &Checkpoint, store: &mut ParamStore) -> Result<()> {
    let ids: Vec<_> = store.ids().collect();
    for id in ids {
        let name = store.name(id).to_string();
        let t = ckpt.tensors.get(&name).ok_or_else(|| {
            ckpt_err(path, format!("tensor {name}: missing (does the checkpoint belong to this model?)"))
        })?;
        let want = store.value(id).shape().to_vec();
        let fits = t.shape() == want.as_slice() || one_value_each(t.shape(), &want);
        if !fits {
            return Err(ckpt_err(path, format!("tensor {name}: expected shape {want:?}, found {:?}", t.shape())));
        }
        store.value_mut(id).data_mut().copy_from_slice(t.data());
    }
    Ok(())
}
