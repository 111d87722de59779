"""Motion magnification end to end: frames per second, and memory against video length.

Speed: a colour H.264 video (ffmpeg's own ``testsrc2`` pattern, made once per size) is read,
magnified with the phase method (4 orientations, octave bands, α = 20) and written as
H.264, as ``pyramids magnify`` does, decode and encode included. Beside it, in the same
run and interleaved (:func:`harness.interleaved_medians`), the same read and write with
no magnification (``copy``): the ratio says what the magnification itself costs on top
of the video I/O. Sizes: 480×640 (the issue's target: 10 frames/s on 2 cores) and 1080p.

Memory: peak resident memory (``VmHWM``, :func:`peak_kib`) of a fresh process that magnifies
a video of 100 and of 1,000 frames: it must not grow with the length (frames are streamed).

    pip install -e '.[video]'
    python benchmarks/bench_magnify.py --threads 2
    python benchmarks/bench_magnify.py --sizes 480x640 --frames 60 --repeats 3
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

from harness import interleaved_medians, print_machine

from pyramids.magnify import PhaseMagnifier
from pyramids.video import VideoReader, write_video

FPS = 30.0
BAND = (0.5, 3.0)


def make_video(path: Path, height: int, width: int, frames: int) -> None:
    """An H.264 test video made by ffmpeg itself (a moving colour pattern)."""
    import imageio_ffmpeg

    subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error", "-f", "lavfi",
         "-i", f"testsrc2=size={width}x{height}:rate={FPS:g}", "-frames:v", str(frames),
         "-c:v", "libx264", "-pix_fmt", "yuv420p", "-crf", "18", str(path)],
        check=True,
    )  # fmt: skip


def pipeline(source: Path, target: Path, threads: int, magnify: bool) -> int:
    """Read, (magnify,) write: what ``pyramids magnify`` does; returns the frame count."""
    video = VideoReader(source)
    frames = video.frames()
    if magnify:
        magnifier = PhaseMagnifier(video.shape, video.fps, 20.0, BAND, threads=threads)
        frames = (magnifier(frame) for frame in frames)
    return write_video(target, frames, video.fps)


def speed(sizes: list[str], count: int, threads: int, repeats: int, work: Path) -> None:
    print(f"### End to end, phase method, 4 orientations, octave bands, {count} frames")
    print(f"{threads} threads, median of {repeats}; ratio: magnify / copy\n")
    print("| size | magnify (frames/s) | copy (frames/s) | ratio (time) |")
    print("| --- | ---: | ---: | ---: |")
    for size in sizes:
        height, width = (int(n) for n in size.split("x"))
        source = work / f"in-{size}.mp4"
        make_video(source, height, width, count)
        times = interleaved_medians(
            {
                "magnify": lambda s=source: pipeline(s, work / "out.mp4", threads, True),
                "copy": lambda s=source: pipeline(s, work / "copy.mp4", threads, False),
            },
            repeats,
            warmup=0,
        )
        m, c = times["magnify"], times["copy"]
        print(f"| {height}×{width} | {count / m:.1f} | {count / c:.1f} | {m / c:.2f} |")


def peak_kib() -> int:
    """This process's peak resident memory in KiB: ``VmHWM`` where Linux has it.

    ``ru_maxrss`` is not used where ``VmHWM`` exists: Linux carries it over ``exec`` from
    the forked copy of the parent, so a child would report the benchmark's own peak.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def memory(lengths: list[int], size: str, threads: int, work: Path) -> None:
    height, width = (int(n) for n in size.split("x"))
    print(f"\n### Peak memory of a fresh process, {height}×{width} colour, phase method\n")
    print("| frames | peak RSS (MiB) |")
    print("| ---: | ---: |")
    for length in lengths:
        source = work / f"rss-{length}.mp4"
        make_video(source, height, width, length)
        code = (
            "import sys; from pathlib import Path; "
            "sys.path.insert(0, sys.argv[1]); from bench_magnify import pipeline, peak_kib; "
            "n = pipeline(Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4]), True); "
            "print(n, peak_kib())"
        )
        result = subprocess.run(
            [sys.executable, "-c", code, str(Path(__file__).parent), str(source),
             str(work / "rss-out.mp4"), str(threads)],
            check=True, capture_output=True, text=True,
        )  # fmt: skip
        frames, kib = (int(v) for v in result.stdout.split())
        assert frames == length
        print(f"| {length} | {kib / 1024:.0f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["480x640", "1080x1920"])
    parser.add_argument("--frames", type=int, default=90)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rss-frames", type=int, nargs="*", default=[100, 1000])
    parser.add_argument("--rss-size", default="240x320")
    args = parser.parse_args()
    print_machine()
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        speed(args.sizes, args.frames, args.threads, args.repeats, work)
        if args.rss_frames:
            memory(args.rss_frames, args.rss_size, args.threads, work)


if __name__ == "__main__":
    main()
