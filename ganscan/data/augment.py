"""Training augmentations, validation degradations and evaluation perturbations, in one module.

Training view of one image (the CNNDetection recipe, Wang et al. 2020), in this order:

1. optional resize: shorter side to ``resize`` pixels (bilinear). Off by default: resampling erases
   the upsampling traces detectors rely on (CNNDetection's resize is a no-op on its 256 px data).
1b. random rescale with probability ``rescale_prob``: the image is scaled by a factor ~ U[``rescale_range``]
   (default 0.5-1.0, down-scaling only) with a resampling filter drawn from box, bilinear, bicubic and
   Lanczos; an image that would end smaller than the crop is left alone. Off by default. It applies to
   both classes, so a detector trained with it cannot take "resampled" for "real", and it learns what
   survives the down-scaling that sharing sites apply.
2. Gaussian blur with probability ``blur_prob``, sigma ~ U[``blur_sigma``] (default U[0, 3]).
3. JPEG re-compression with probability ``jpeg_prob``, quality ~ U{``jpeg_quality``} (default 30..100),
   Pillow's encoder (CNNDetection draws OpenCV or Pillow; only Pillow is used here).
4. random ``crop`` x ``crop`` crop (sides shorter than ``crop`` are mirror-padded, as in scan's
   preprocessing, never resized).
5. horizontal flip with probability ``flip_prob``.

Images much larger than the crop are first cut to a random window a little larger than the crop, so
blur and JPEG cost the same on a 4000 px photo as on a 256 px one; the final crop is still uniformly
placed inside the window, and the window uniformly inside the image.

Every random draw comes from a generator seeded by (seed, epoch, sample index), and every draw is made
whether or not its branch applies, so a run is reproducible with any number of loader workers and
after a resume, and changing one probability does not reshuffle the other choices.

Validation (``degrade_for_validation``) follows CNNDetection: the same probabilities, but a fixed
blur sigma (1.5, the middle of U[0, 3]) and JPEG quality (65, the middle of 30..100); whether an image
is blurred or compressed is decided once per image from the seed, so every validation pass sees
exactly the same pixels. The crop is then scan's centre crop (ganscan.detectors.preprocess).

Evaluation perturbations (``--perturb jpeg:90,blur:1,resize:0.5``; ``nearest``, ``bicubic`` and ``lanczos``
rescale with that filter where ``resize`` is bilinear) are ``parse_perturbations`` and
``apply_perturbation``.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter

WINDOW_MARGIN = 16


@dataclass
class AugmentConfig:
    crop: int = 224
    resize: int | None = None
    flip_prob: float = 0.5
    blur_prob: float = 0.0
    blur_sigma: tuple[float, float] = (0.0, 3.0)
    jpeg_prob: float = 0.0
    jpeg_quality: tuple[int, int] = (30, 100)
    rescale_prob: float = 0.0
    rescale_range: tuple[float, float] = (0.5, 1.0)
    crop_align: int = 1              # crops start at multiples of this from the image's origin (8: JPEG's grid)

    def __post_init__(self):
        self.blur_sigma = (float(self.blur_sigma[0]), float(self.blur_sigma[1]))
        self.jpeg_quality = (int(self.jpeg_quality[0]), int(self.jpeg_quality[1]))
        self.rescale_range = (float(self.rescale_range[0]), float(self.rescale_range[1]))
        for name in ("flip_prob", "blur_prob", "jpeg_prob", "rescale_prob"):
            p = getattr(self, name)
            if not 0.0 <= float(p) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {p}")
        lo, hi = self.blur_sigma
        if not 0.0 <= lo <= hi:
            raise ValueError(f"blur sigma range must satisfy 0 <= low <= high, got {self.blur_sigma}")
        qlo, qhi = self.jpeg_quality
        if not 1 <= qlo <= qhi <= 100:
            raise ValueError(f"JPEG quality range must satisfy 1 <= low <= high <= 100, got {self.jpeg_quality}")
        slo, shi = self.rescale_range
        if not 0.1 <= slo <= shi <= 1.0:
            raise ValueError(f"rescale range must satisfy 0.1 <= low <= high <= 1, got {self.rescale_range}")
        if int(self.crop) < 8:
            raise ValueError(f"crop must be at least 8 pixels, got {self.crop}")
        if not 1 <= int(self.crop_align) <= 64:
            raise ValueError(f"crop alignment must be 1-64 pixels, got {self.crop_align}")
        if self.resize is not None and int(self.resize) < int(self.crop):
            raise ValueError(f"resize ({self.resize}) must be at least the crop ({self.crop})")

    # validation: the middle of each range
    @property
    def val_sigma(self) -> float:
        return sum(self.blur_sigma) / 2.0

    @property
    def val_quality(self) -> int:
        return int(sum(self.jpeg_quality) / 2)

    @property
    def val_rescale(self) -> float:
        return sum(self.rescale_range) / 2.0


def sample_rng(seed: int, epoch: int, index: int, stream: int = 0) -> np.random.Generator:
    """A generator owned by one sample of one epoch (independent of workers, ranks and resumes)."""
    m = (1 << 63) - 1
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(
        [int(seed) & m, int(epoch) & m, int(index) & m, int(stream)])))


# --- primitives -------------------------------------------------------------------------------------

def gaussian_blur(img: Image.Image, sigma: float) -> Image.Image:
    """Gaussian blur with standard deviation ``sigma`` pixels (Pillow's extended box approximation)."""
    if sigma <= 0:
        return img
    return img.filter(ImageFilter.GaussianBlur(radius=float(sigma)))


def jpeg_roundtrip(img: Image.Image, quality: int) -> Image.Image:
    """Encode as JPEG at ``quality`` (4:2:0, Pillow's default tables) and decode again."""
    buf = io.BytesIO()
    img.convert("RGB").save(buf, format="JPEG", quality=int(quality))
    buf.seek(0)
    out = Image.open(buf)
    out.load()
    return out.convert("RGB")


RESCALE_FILTERS = (Image.BOX, Image.BILINEAR, Image.BICUBIC, Image.LANCZOS)


def rescale(img: Image.Image, factor: float, resample=Image.BILINEAR) -> Image.Image:
    """Scale both sides by ``factor`` (at least 1 pixel each); Pillow's filters antialias when shrinking."""
    if factor == 1.0:
        return img
    w, h = img.size
    return img.resize((max(1, round(w * factor)), max(1, round(h * factor))), resample)


def resize_shorter(img: Image.Image, size: int) -> Image.Image:
    return rescale(img, size / min(img.size), Image.BILINEAR)


def aligned_offset(u: float, span: int, align: int = 1) -> int:
    """An offset in [0, span] drawn by the uniform ``u`` in [0, 1), a multiple of ``align`` (``align`` 1: any)."""
    if align <= 1:
        return int(u * (span + 1))
    return int(u * (span // align + 1)) * align


def random_crop_array(arr: np.ndarray, size: int, u_y: float, u_x: float, align: int = 1) -> np.ndarray:
    """A ``size`` crop at the position given by two uniforms in [0, 1), its offsets multiples of ``align``;
    mirror-pads short sides."""
    h, w = arr.shape[:2]
    if h < size or w < size:
        ph, pw = max(0, size - h), max(0, size - w)
        arr = np.pad(arr, ((ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)), mode="symmetric")
        h, w = arr.shape[:2]
    top = aligned_offset(u_y, h - size, align)
    left = aligned_offset(u_x, w - size, align)
    return arr[top:top + size, left:left + size]


# --- training and validation ------------------------------------------------------------------------

def train_view(img: Image.Image, cfg: AugmentConfig, rng: np.random.Generator) -> np.ndarray:
    """One augmented training crop: (crop, crop, 3) uint8."""
    # fixed draw order (see module docstring)
    u = rng.random(8)
    sigma = cfg.blur_sigma[0] + u[1] * (cfg.blur_sigma[1] - cfg.blur_sigma[0])
    quality = int(rng.integers(cfg.jpeg_quality[0], cfg.jpeg_quality[1] + 1))
    # drawn after the others, so that runs without rescaling see exactly the views they always saw
    r = rng.random(2)
    f = int(rng.integers(0, len(RESCALE_FILTERS)))
    factor = cfg.rescale_range[0] + r[1] * (cfg.rescale_range[1] - cfg.rescale_range[0])
    img = img.convert("RGB")
    if cfg.resize:
        img = resize_shorter(img, int(cfg.resize))
    align = int(cfg.crop_align)
    w, h = img.size
    # images that would no longer fill a crop are left alone (mirror padding would be all the view)
    scaled = r[0] < cfg.rescale_prob and min(w, h) * factor >= cfg.crop
    window = cfg.crop + 2 * WINDOW_MARGIN
    if scaled:
        window = int(np.ceil(window / factor))   # still at least crop + margins after the rescale
    if w > 2 * window or h > 2 * window:
        ww, wh = min(w, window), min(h, window)
        # an aligned window keeps the image's grid (JPEG blocks, up-sampling cells) where the crop expects it
        left, top = aligned_offset(u[6], w - ww, align), aligned_offset(u[7], h - wh, align)
        img = img.crop((left, top, left + ww, top + wh))
    if scaled:
        img = rescale(img, factor, RESCALE_FILTERS[f])
    if u[0] < cfg.blur_prob:
        img = gaussian_blur(img, sigma)
    if u[2] < cfg.jpeg_prob:
        img = jpeg_roundtrip(img, quality)
    arr = random_crop_array(np.asarray(img), int(cfg.crop), u[3], u[4], align)
    if u[5] < cfg.flip_prob:
        arr = arr[:, ::-1]
    return np.ascontiguousarray(arr)


def degrade_for_validation(img: Image.Image, cfg: AugmentConfig, seed: int, index: int) -> Image.Image:
    """CNNDetection's validation: fixed sigma and quality, applied to a fixed subset of images."""
    u = sample_rng(seed, 0, index, stream=1).random(2)
    img = img.convert("RGB")
    if cfg.resize:
        img = resize_shorter(img, int(cfg.resize))
    if sample_rng(seed, 0, index, stream=3).random() < cfg.rescale_prob and \
            min(img.size) * cfg.val_rescale >= cfg.crop:
        img = rescale(img, cfg.val_rescale, Image.BILINEAR)
    if u[0] < cfg.blur_prob:
        img = gaussian_blur(img, cfg.val_sigma)
    if u[1] < cfg.jpeg_prob:
        img = jpeg_roundtrip(img, cfg.val_quality)
    return img


# --- evaluation perturbations -----------------------------------------------------------------------

PERTURBATIONS = {
    "jpeg": "re-compress as JPEG at quality Q (1-100), e.g. jpeg:75",
    "blur": "Gaussian blur with sigma S pixels, e.g. blur:1",
    "resize": "rescale by factor F (bilinear), e.g. resize:0.5",
    "nearest": "rescale by factor F with nearest-neighbour sampling, e.g. nearest:2",
    "bicubic": "rescale by factor F (bicubic), e.g. bicubic:2",
    "lanczos": "rescale by factor F (Lanczos), e.g. lanczos:2",
    "shift": "drop the first N rows and columns, the same pixels at another grid phase (lossless), e.g. shift:1",
}
PERTURB_FILTERS = {"resize": Image.BILINEAR, "nearest": Image.NEAREST, "bicubic": Image.BICUBIC,
                   "lanczos": Image.LANCZOS}


def parse_perturbations(spec: str) -> list[tuple[str, float]]:
    """``"jpeg:90,blur:1,resize:0.5"`` -> [("jpeg", 90.0), ...]. Raises ValueError with a clear message."""
    out: list[tuple[str, float]] = []
    for part in (spec or "").split(","):
        part = part.strip()
        if not part:
            continue
        kind, sep, value = part.partition(":")
        kind = kind.strip().lower()
        if kind not in PERTURBATIONS or not sep:
            raise ValueError(f"unknown perturbation {part!r} (use " + ", ".join(
                f"{k}:VALUE" for k in PERTURBATIONS) + ")")
        try:
            v = float(value)
        except ValueError:
            raise ValueError(f"perturbation {part!r}: {value!r} is not a number") from None
        if kind == "jpeg" and not (1 <= v <= 100 and v == int(v)):
            raise ValueError(f"perturbation {part!r}: JPEG quality must be an integer in 1..100")
        if kind == "blur" and not v > 0:
            raise ValueError(f"perturbation {part!r}: sigma must be positive")
        if kind in PERTURB_FILTERS and not 0 < v <= 4:
            raise ValueError(f"perturbation {part!r}: scale must be in (0, 4]")
        if kind == "shift" and not (1 <= v <= 64 and v == int(v)):
            raise ValueError(f"perturbation {part!r}: the shift must be an integer of 1-64 pixels")
        out.append((kind, v))
    return out


def perturbation_name(kind: str, value: float) -> str:
    return f"{kind}:{int(value) if value == int(value) else value:g}" if kind == "jpeg" else f"{kind}:{value:g}"


def apply_perturbation(img: Image.Image, kind: str, value: float) -> tuple[Image.Image, str]:
    """(perturbed image, how to store it: 'jpeg:Q' to save as JPEG at Q, 'png' for lossless)."""
    img = img.convert("RGB")
    if kind == "jpeg":
        return img, f"jpeg:{int(value)}"
    if kind == "blur":
        return gaussian_blur(img, value), "png"
    if kind in PERTURB_FILTERS:
        return rescale(img, value, PERTURB_FILTERS[kind]), "png"
    if kind == "shift":
        n, (w, h) = int(value), img.size
        return (img.crop((n, n, w, h)) if n < min(w, h) else img), "png"
    raise ValueError(f"unknown perturbation {kind!r}")
