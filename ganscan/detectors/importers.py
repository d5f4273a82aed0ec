"""Importing foreign weights into ganscan checkpoints (``ganscan models import``): the released files of
published detectors (``source``: one of ``SOURCES``), or a plain state dict of a registered architecture.

Tensors are matched by name, never by order, and every one must be accounted for: a file of another layout is
refused with one line naming what it looks like. The checkpoint records the source and each file's sha256.
Files are read with ``load_foreign_state_dict`` (no pickled code runs).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from ganscan.core.checkpoint import load_foreign_state_dict, load_strict, save_checkpoint, sha256_file
from ganscan.detectors.registry import build_detector, get_config
from ganscan.errors import CheckpointError, GanscanError, UnknownNameError, suggest


@dataclass(frozen=True)
class Source:
    arch: str
    paper: str
    repository: str
    files: str


SOURCES = {
    "cnndetection": Source("resnet50", "Wang et al., CVPR 2020", "PeterWang512/CNNDetection",
                           "blur_jpg_prob0.5.pth, blur_jpg_prob0.1.pth"),
    "npr": Source("npr-tan2024", "Tan et al., CVPR 2024", "chuangchuangtan/NPR-DeepfakeDetection", "NPR.pth"),
    "ufd": Source("ufd", "Ojha et al., CVPR 2023", "Yuheng-Li/UniversalFakeDetect",
                  "fc_weights.pth, and --clip: OpenAI's CLIP ViT-L/14 (ViT-L-14.pt, or it from OpenCLIP)"),
    "dmid": Source("dmid", "Corvi et al., ICASSP 2023", "grip-unina/DMimageDetection",
                   "Grag2021_progan/model_epoch_best.pth, Grag2021_latent/model_epoch_best.pth"),
}


def looks_like(state: dict) -> str:
    """What a state dict's names and shapes suggest it is, in a few words."""
    keys = set(state)
    if "visual.class_embedding" in keys:
        return "CLIP weights (OpenAI or OpenCLIP layout)"
    if any(k.startswith("vision_model.") for k in keys):
        return "a Hugging Face CLIP model"
    if any(k.endswith("cls_token") for k in keys):
        return "a timm ViT"
    if keys == {"weight", "bias"}:
        return f"a bare linear layer {tuple(state['weight'].shape)}, like UFD's fc_weights.pth"
    if {"fc1.weight", "layer2.0.conv1.weight"} <= keys and "layer3.0.conv1.weight" not in keys:
        return "an NPR ResNet (Tan et al. 2024)"
    if {"layer4.2.conv3.weight", "fc.weight"} <= keys:
        n = state["fc.weight"].shape[0]
        return ("a ResNet-50 with one logit (CNNDetection's and DMID's layout)" if n == 1
                else f"a ResNet-50 with {n} outputs")
    return f"an unknown layout ({len(keys)} tensors, first {min(keys)!r})"


def _refuse(path, state: dict, want: dict, expected: str, source: str):
    """A one-line CheckpointError unless ``state`` has exactly ``want``'s names and shapes."""
    missing = [k for k in want if k not in state]
    extra = [k for k in state if k not in want]
    shape = [k for k in want if k in state and tuple(state[k].shape) != tuple(want[k].shape)]
    if missing or extra or shape:
        counts = f"{len(missing)} tensors missing, {len(extra)} unexpected, {len(shape)} of another shape"
        raise CheckpointError(f"{path}: looks like {looks_like(state)}, not {expected} ({counts}; first "
                              f"{(missing + extra + shape)[0]!r})",
                              hint=f"check --from; {source} expects {SOURCES[source].files}")


# the layout each published ResNet's file must have (its tensors carry the architecture's own names)
SAME_NAMES = {"cnndetection": "CNNDetection's ResNet-50 (one logit)",
              "npr": "NPR (conv1, layer1-2, fc1 512->1)",
              "dmid": "DMID's res50stride1 (a ResNet-50 with one logit)"}


def _same_names(path, state: dict, source: str) -> tuple[str, dict, dict]:
    """Files whose names are the architecture's own; ``num_batches_tracked`` (unused at inference, absent from
    files saved before PyTorch 0.4.1) is filled in when missing."""
    arch = SOURCES[source].arch
    want = build_detector(arch).state_dict()
    fill = {k: v for k, v in want.items() if k.endswith("num_batches_tracked") and k not in state}
    state = {**state, **fill} if set(state) | set(fill) == set(want) else state
    _refuse(path, state, want, SAME_NAMES[source], source)
    return arch, state, {}


_CLIP_NAMES = [(re.compile(a), b) for a, b in (
    (r"conv1\.weight", "visual.patch_embed.proj.weight"), (r"class_embedding", "visual.cls_token"),
    (r"positional_embedding", "visual.pos_embed"), (r"ln_pre\.(weight|bias)", r"visual.norm_pre.\1"),
    (r"ln_post\.(weight|bias)", r"visual.norm.\1"), (r"proj", "proj"),
    (r"transformer\.resblocks\.(\d+)\.ln_([12])\.(weight|bias)", r"visual.blocks.\1.norm\2.\3"),
    (r"transformer\.resblocks\.(\d+)\.attn\.in_proj_(weight|bias)", r"visual.blocks.\1.attn.qkv.\2"),
    (r"transformer\.resblocks\.(\d+)\.attn\.out_proj\.(weight|bias)", r"visual.blocks.\1.attn.proj.\2"),
    (r"transformer\.resblocks\.(\d+)\.mlp\.c_fc\.(weight|bias)", r"visual.blocks.\1.mlp.fc1.\2"),
    (r"transformer\.resblocks\.(\d+)\.mlp\.c_proj\.(weight|bias)", r"visual.blocks.\1.mlp.fc2.\2"))]


def import_ufd(path, state, clip_path):
    """UFD's head (``fc_weights.pth``: ``weight`` (1, 768), ``bias`` (1,)) on CLIP's image tower: every
    ``visual.*`` tensor of the CLIP file is mapped (the text tower is not used); sizes come from shapes."""
    if clip_path is None:
        raise GanscanError("--from ufd needs --clip FILE, the CLIP ViT-L/14 weights UFD's head was made for",
                           hint="OpenAI's ViT-L-14.pt, or the same weights saved by OpenCLIP")
    clip = load_foreign_state_dict(clip_path)
    if "visual.class_embedding" not in clip or "visual.proj" not in clip:
        raise CheckpointError(f"{clip_path}: looks like {looks_like(clip)}, not a CLIP ViT (OpenAI or "
                              "OpenCLIP layout: visual.conv1.weight, visual.class_embedding, ...)")
    mapped, unknown = {}, []
    for key, v in clip.items():
        if not key.startswith("visual."):
            continue
        rule = next(((rx, to) for rx, to in _CLIP_NAMES if rx.fullmatch(key[7:])), None)
        if rule is None:
            unknown.append(key)
            continue
        name = rule[0].sub(rule[1], key[7:])
        mapped[name] = {"visual.cls_token": v.reshape(1, 1, -1), "visual.pos_embed": v[None]}.get(name, v)
    if unknown:
        raise CheckpointError(f"{clip_path}: {len(unknown)} CLIP image-tower tensors of another layout "
                              f"(first {unknown[0]!r}); expected OpenAI's ViT (no layer scale or timm trunk)")
    w = clip["visual.conv1.weight"]
    sizes = {"width": w.shape[0], "patch": w.shape[-1], "out": clip["visual.proj"].shape[1],
             "layers": sum(1 for k in mapped if k.endswith(".attn.qkv.weight")),
             "image": w.shape[-1] * round((clip["visual.positional_embedding"].shape[0] - 1) ** 0.5)}
    head = {"fc." + k: v for k, v in state.items()}
    _refuse(path, state, {"weight": torch.empty(1, sizes["out"]), "bias": torch.empty(1)},
            f"UFD's fc_weights.pth (a Linear({sizes['out']}, 1) head)", "ufd")
    return "ufd", {**mapped, **head}, sizes


def check_output(output, force: bool) -> Path:
    """The checkpoint path to write: it must end in .safetensors, be in a folder that exists, and exist only
    with ``force``; checked before any work."""
    out = Path(output)
    if out.suffix != ".safetensors":
        raise GanscanError(f"output must end in .safetensors: {output}")
    if out.exists() and not force:
        raise GanscanError(f"{output} exists", hint="use --force to overwrite")
    if not out.parent.exists():
        raise GanscanError(f"folder does not exist: {out.parent}")
    return out


def import_checkpoint(path, source: str | None = None, out=None, *, arch: str | None = None, clip=None,
                      name: str | None = None, threshold: float = 0.5,
                      force: bool = False) -> tuple[Path, str, dict]:
    """Write ``out`` (default ``SOURCE-STEM.safetensors`` here) from the released weights of ``source`` (a key
    of ``SOURCES``; ``clip``: the CLIP file for ``ufd``) or from a plain state dict of the architecture
    ``arch``. Returns (path, sha256 of the checkpoint, its metadata)."""
    if (source is None) == (arch is None):
        raise GanscanError("give --from NAME (a published detector) or --arch NAME (a plain state dict)")
    if source is not None and source not in SOURCES:
        close = suggest(source, SOURCES)
        raise UnknownNameError(f"unknown published detector {source!r}",
                               hint=f"did you mean {close!r}?" if close else f"one of {', '.join(SOURCES)}")
    if clip is not None and source != "ufd":
        raise GanscanError("--clip is for --from ufd only")
    out = check_output(Path(out) if out else Path(f"{source or arch}-{Path(path).stem}.safetensors"), force)
    state = load_foreign_state_dict(path)
    files = [path] + ([clip] if clip else [])
    if arch is not None:
        sizes = {}
        model = build_detector(arch)
        missing = len(set(model.state_dict()) - set(state))
        load_strict(model, state, str(path), f"does not fit {arch} ({missing} tensors missing)",
                    hint="check --arch; the head must have one output logit")
    else:
        arch, state, sizes = (import_ufd(path, state, clip) if source == "ufd"
                              else _same_names(path, state, source))
        load_strict(build_detector(arch, **sizes), state, str(path), f"does not fit {arch}")
    cfg = get_config(arch)
    pre = {**cfg.preprocessing(), **({"input_size": sizes["image"]} if "image" in sizes else {})}
    meta = {"kind": "detector", "arch": arch, "name": name or out.stem, "threshold": threshold,
            "preprocessing": pre, "arch_args": sizes,
            "source": {**(asdict(SOURCES[source]) if source else {}), "from": source,
                       "files": [{"file": Path(f).name, "sha256": sha256_file(f)} for f in files]},
            "training": {"imported_from": Path(path).name}}
    return out, save_checkpoint(out, state, meta), meta
