"""Reading and writing videos frame by frame: a video file through ffmpeg, or a PNG folder.

Video files go through ``imageio-ffmpeg`` (the optional extra ``video``), which ships its
own ffmpeg binary, so nothing else needs installing. It was chosen over PyAV because it
decodes and encodes in a separate ffmpeg process that exchanges raw RGB frames through a
pipe: decoding and encoding then run on other cores while this process filters, which is
what lets a streaming pipeline keep up with the video; and it is a small pure-Python
package. A folder of numbered PNG frames works without it, for people without ffmpeg.

Frames are ``uint8`` arrays of shape ``(h, w, 3)`` (RGB) from a video, and the PNGs' own
layout (grey ``(h, w)`` or ``(h, w, 3)``) from a folder. Reading is lazy (a generator):
memory does not grow with the length of the video. Writing is atomic: a video goes to a
temporary name beside the output and is renamed at the end, a PNG folder to a temporary
folder; a failure or an interruption leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
import warnings
from collections.abc import Iterable, Iterator
from fractions import Fraction
from pathlib import Path

import numpy as np

from .io import ImageFileError, atomic_path, image_size, read_image, write_image

__all__ = [
    "VIDEO_SUFFIXES",
    "VideoFileError",
    "VideoReader",
    "is_video_output",
    "write_video",
]

#: Suffixes written through ffmpeg (H.264 in each container); no suffix means a PNG folder.
VIDEO_SUFFIXES = (".mp4", ".mkv", ".mov", ".avi")
#: Quality of the H.264 encoding: x264's constant rate factor (0 lossless … 51; 18 is
#: "visually lossless" in x264's documentation). Small, so that compression noise is not
#: magnified by a later pass.
CRF = 12
#: Frame rate assumed for a PNG folder when none is given.
DEFAULT_FOLDER_FPS = 30.0
_NUMBER = re.compile(r"(\d+)(?!.*\d)")  # the last run of digits in a name


class VideoFileError(ValueError):
    """A video that cannot be read (missing, undecodable, no frames, mismatched frames) or
    written the way asked."""


def _ffmpeg():
    """The ``imageio_ffmpeg`` module, or a clear error naming the extra to install."""
    try:
        import imageio_ffmpeg
    except ImportError:
        raise VideoFileError(
            "reading or writing video files needs imageio-ffmpeg: pip install "
            "'pyramids-convnet[video]' (or use a folder of numbered PNG frames)"
        ) from None
    return imageio_ffmpeg


def is_video_output(path: str | os.PathLike) -> bool:
    """Whether ``path`` names a video file (a suffix of :data:`VIDEO_SUFFIXES`) rather than
    a folder of PNG frames (no suffix).

    Raises
    ------
    VideoFileError
        For any other suffix.
    """
    suffix = Path(path).suffix.lower()
    if suffix in VIDEO_SUFFIXES:
        return True
    if suffix == "":
        return False
    raise VideoFileError(
        f"{path}: unsupported video suffix {suffix!r}; use one of {list(VIDEO_SUFFIXES)}, "
        "or a name without a suffix for a folder of PNG frames"
    )


def _numbered_pngs(folder: Path) -> list[Path]:
    frames = []
    for path in folder.iterdir():
        match = _NUMBER.search(path.stem)
        # hidden names are not frames (macOS leaves "._frame_0001.png" beside each file)
        hidden = path.name.startswith(".")
        if path.suffix.lower() == ".png" and match and not hidden and path.is_file():
            frames.append((int(match.group(1)), path.name, path))
    return [path for *_, path in sorted(frames)]


class VideoReader:
    """A video file or a folder of numbered PNG frames, opened for reading frame by frame.

    Opening checks what can be checked before any work: that the file decodes (its first
    frame is read), that there is at least one frame, and for a folder that every PNG has
    the first one's size (from the headers).

    Parameters
    ----------
    path : str or os.PathLike
        A video file ffmpeg can decode, or a folder of PNGs numbered in their names
        (``frame_0001.png`` …, ordered by the last number in the name).
    fps : float, optional
        Frame rate; default the video's own, or :data:`DEFAULT_FOLDER_FPS` for a folder.

    Attributes
    ----------
    path : Path
    fps : float
    shape : tuple of int
        ``(h, w)`` or ``(h, w, 3)`` of every frame.
    frame_count : int or None
        The number of frames if known without decoding (a folder), else ``None``.
    announced_frames : int or None
        For a video file, the frames its header's duration and rate announce (rounded),
        else ``None``; see :attr:`frames_read` and :meth:`shortfall`.
    frames_read : int
        How many frames :meth:`frames` has yielded so far.

    Raises
    ------
    VideoFileError
        Missing path, undecodable video, no frames, mismatched frame sizes in a folder.

    Examples
    --------
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> write_video(folder / "clip", (np.full((4, 6), t / 4) for t in range(3)), fps=10)
    3
    >>> video = VideoReader(folder / "clip", fps=10)
    >>> video.shape, video.fps, [int(f[0, 0]) for f in video.frames()]
    ((4, 6), 10.0, [0, 64, 128])
    """

    def __init__(self, path: str | os.PathLike, *, fps: float | None = None):
        self.path = Path(path)
        self.frames_read = 0
        self.announced_frames: int | None = None
        if fps is not None and not (np.isfinite(fps) and fps > 0):
            raise VideoFileError(f"fps must be a positive number, got {fps!r}")
        if self.path.is_dir():
            self._pngs = _numbered_pngs(self.path)
            if not self._pngs:
                raise VideoFileError(f"{self.path}: no numbered PNG frames in this folder")
            first = image_size(self._pngs[0])
            for png in self._pngs[1:]:
                size = image_size(png)
                if size != first:
                    raise VideoFileError(
                        f"{png}: frame of {size[1]}×{size[0]} (width×height), but "
                        f"{self._pngs[0].name} is {first[1]}×{first[0]}; all frames of a "
                        "folder must have the same size"
                    )
            self.shape = read_image(self._pngs[0]).shape
            self.fps = float(fps or DEFAULT_FOLDER_FPS)
            self.frame_count: int | None = len(self._pngs)
            return
        if not self.path.is_file():
            raise VideoFileError(f"{self.path}: no such file or folder")
        self._pngs = []
        frames = self._decode()
        try:
            meta = next(frames)
            first = next(frames, None)
        finally:
            frames.close()
        if first is None:
            raise VideoFileError(f"{self.path}: the video has no frames")
        width, height = meta["size"]
        self.shape = (int(height), int(width), 3)
        video_fps = float(meta.get("fps") or 0)
        if fps is None and not video_fps > 0:
            raise VideoFileError(f"{self.path}: the video does not say its frame rate; give --fps")
        self.fps = float(fps or video_fps)
        self.frame_count = None
        duration = meta.get("duration")
        if video_fps > 0 and isinstance(duration, (int, float)) and np.isfinite(duration):
            self.announced_frames = round(float(duration) * video_fps) if duration > 0 else None
            self._header = (float(duration), video_fps)

    def shortfall(self) -> str | None:
        """After reading every frame: why fewer came than the header announces, or None.

        ffmpeg decodes a cut-off file up to where it ends and says nothing to its caller, so
        this compares the frames read with :attr:`announced_frames`. A container's duration
        can be a little longer than its video (an audio track that runs on, a last frame's
        display time), so only a shortfall of more than 2 frames and 2% counts.
        """
        announced = self.announced_frames
        if announced is None or self.frames_read >= announced - max(2, 0.02 * announced):
            return None
        return (
            f"{self.path}: decoded {self.frames_read} frames where its header announces "
            f"{announced} ({self._header[0]:g} s at {self._header[1]:g} frames/s); "
            "the file may be truncated"
        )

    def _decode(self) -> Iterator:
        """imageio-ffmpeg's generator (metadata, then raw frames), errors made one line.

        imageio-ffmpeg leaves the pipes of an ffmpeg that has already exited (at the end of
        the video, or when it cannot decode it) to the garbage collector, which warns; each
        step of its generator runs where that expected ResourceWarning is silenced.
        """
        generator = _ffmpeg().read_frames(str(self.path))
        failure = None
        try:
            while failure is None:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", ResourceWarning)
                    try:
                        item = next(generator)
                    except StopIteration:
                        return
                    except (OSError, RuntimeError, KeyError, ValueError) as exc:
                        failure = " ".join(str(exc).split("\n")[0].split()) or "unknown error"
                        continue
                yield item
        finally:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ResourceWarning)
                generator.close()
                del generator
        raise VideoFileError(f"{self.path}: cannot decode this video ({failure[:200]})")

    def frames(self) -> Iterator[np.ndarray]:
        """The frames, one at a time (a generator; nothing is kept).

        Yields
        ------
        ndarray, :attr:`shape`, uint8 (a folder of 16-bit PNGs: uint16)

        Raises
        ------
        VideoFileError
            If a frame cannot be decoded, or has another size than the first.
        """
        if self._pngs:
            for png in self._pngs:
                try:
                    frame = read_image(png)
                except ImageFileError as exc:
                    raise VideoFileError(str(exc)) from None
                if frame.shape != self.shape:
                    raise VideoFileError(
                        f"{png}: frame of shape {frame.shape}, but the first is {self.shape}"
                    )
                self.frames_read += 1
                yield frame
            return
        frames = self._decode()
        try:
            next(frames)  # the metadata
            for raw in frames:
                self.frames_read += 1
                yield np.frombuffer(raw, dtype=np.uint8).reshape(self.shape)
        finally:
            frames.close()


def _to_uint8(frame: np.ndarray) -> np.ndarray:
    if frame.dtype == np.uint8:
        return frame
    return np.round(np.clip(frame, 0.0, 1.0) * 255).astype(np.uint8)


@contextlib.contextmanager
def _staged_folder(out: Path, force: bool) -> Iterator[Path]:
    """A temporary folder beside ``out``, moved onto ``out`` if the block succeeds."""
    if out.exists() and not force:
        raise VideoFileError(f"output {out} exists; choose another name or pass --force")
    parent = out.absolute().parent
    parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=parent))
    old = None
    try:
        yield stage
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(stage, 0o777 & ~umask)
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old.", dir=parent))
            os.replace(out, old / "out")
        os.replace(stage, out)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


def write_video(
    path: str | os.PathLike,
    frames: Iterable[np.ndarray],
    fps: float,
    *,
    force: bool = True,
) -> int:
    """Write frames one by one to a video file or a folder of PNGs, atomically.

    Parameters
    ----------
    path : str or os.PathLike
        A video file (suffix in :data:`VIDEO_SUFFIXES`: H.264 through ffmpeg, ``CRF``
        quality) or a folder without a suffix (``frame_000000.png`` …).
    frames : iterable of ndarray, shape (h, w) or (h, w, 3)
        ``uint8``, or floats in [0, 1] (clipped, rounded to 8 bits). Consumed lazily.
    fps : float
        Frame rate written into a video file.
    force : bool
        Replace an existing output folder (a file is always replaced atomically).

    Returns
    -------
    int
        The number of frames written.

    Raises
    ------
    VideoFileError
        Bad suffix, no frames, frames of different shapes, an existing folder without
        ``force``; nothing is left behind.
    """
    path = Path(path)
    if not (np.isfinite(fps) and fps > 0):
        raise VideoFileError(f"fps must be a positive number, got {fps!r}")
    if not is_video_output(path):
        with _staged_folder(path, force) as stage:
            count, shape = 0, None
            for frame in frames:
                frame = _to_uint8(np.asarray(frame))
                shape = shape or frame.shape
                if frame.shape != shape:
                    raise VideoFileError(f"frame {count} has shape {frame.shape}, not {shape}")
                write_image(stage / f"frame_{count:06d}.png", frame)
                count += 1
            if count == 0:
                raise VideoFileError("no frames to write")
        return count
    ffmpeg = _ffmpeg()
    iterator = iter(frames)
    first = next(iterator, None)
    if first is None:
        raise VideoFileError("no frames to write")
    first = _to_uint8(np.asarray(first))
    if first.ndim not in (2, 3) or (first.ndim == 3 and first.shape[2] != 3):
        raise VideoFileError(f"frames must be (h, w) or (h, w, 3), got {first.shape}")
    shape = first.shape
    height, width = shape[:2]
    # 4:2:0 chroma needs even sides; odd ones keep every pixel in 4:4:4
    pix_fmt = "yuv420p" if height % 2 == 0 and width % 2 == 0 else "yuv444p"
    with atomic_path(path) as tmp:
        writer = ffmpeg.write_frames(
            str(tmp),
            (width, height),
            pix_fmt_in="gray" if first.ndim == 2 else "rgb24",
            pix_fmt_out=pix_fmt,
            fps=Fraction(fps).limit_denominator(1001),
            codec="libx264",
            quality=None,
            macro_block_size=1,
            output_params=["-crf", str(CRF), "-preset", "veryfast"],
        )
        try:
            writer.send(None)  # start ffmpeg
            count = 0
            frame = first
            while frame is not None:
                if frame.shape != shape:
                    raise VideoFileError(f"frame {count} has shape {frame.shape}, not {shape}")
                writer.send(np.ascontiguousarray(frame))
                count += 1
                nxt = next(iterator, None)
                frame = None if nxt is None else _to_uint8(np.asarray(nxt))
        finally:
            writer.close()
    return count
