"""Write a PNG montage of one scene under a corruption at several severities.

Columns: camera with ground-truth 2D boxes, depth colour-mapped, lidar projected on the image,
bird's-eye view of the cloud with the ground-truth box footprints. One row per severity level,
labelled with the measured quality of each modality.
"""

import argparse

BEV_RANGE = 40.0  # metres shown ahead of the lidar; half of it to each side
DEPTH_MAX = 50.0  # metres at the far end of the depth colour map
LABEL_HEIGHT = 22  # pixels of the caption band above each row
BOX_COLOURS = ((255, 80, 80), (80, 255, 80), (80, 160, 255))  # per class, RGB


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--corruption", default="camera:fog",
                        help="MODALITY:KIND (e.g. camera:fog, lidar:beam_loss) or scene:fog")
    parser.add_argument("--levels", default="0,0.25,0.5,0.75,1",
                        help="comma-separated severities in [0, 1], one row each")
    parser.add_argument("--seed", type=int, default=0, help="scene and corruption seed")
    parser.add_argument("--out", default="preview.png", help="PNG file to write")
    parser.add_argument("--scale", type=float, default=1.0,
                        help="resize the montage by this factor (e.g. 0.5 for docs)")


def parse_levels(text: str) -> list[float]:
    try:
        levels = [float(v) for v in text.split(",") if v.strip()]
    except ValueError as error:
        raise SystemExit(f"--levels: not a list of numbers: {text!r}") from error
    if not levels or any(not 0.0 <= v <= 1.0 for v in levels):
        raise SystemExit(f"--levels: severities must be in [0, 1], got {text!r}")
    return levels


def run(args: argparse.Namespace) -> int:
    import cv2
    import numpy as np

    from adaptive_fusion.core.frames import CORRUPTIONS
    from adaptive_fusion.quality import measure
    from adaptive_fusion.sim import World
    from adaptive_fusion.sim.corruptions import SCENE_EVENTS, corrupt

    key, _, kind = args.corruption.partition(":")
    known = {**CORRUPTIONS, "scene": SCENE_EVENTS}
    if kind not in known.get(key, ()):
        choices = ", ".join(f"{m}:{k}" for m, kinds in known.items() for k in kinds)
        raise SystemExit(f"--corruption {args.corruption!r} unknown; choose one of {choices}")
    levels = parse_levels(args.levels)
    if not 0.1 <= args.scale <= 4.0:
        raise SystemExit(f"--scale must be in [0.1, 4], got {args.scale}")
    clean = World().render(args.seed)
    rows = []
    for level in levels:
        frames = corrupt(clean, {key: (kind, level)}, seed=args.seed)
        quality = measure(frames)
        label = f"{key}:{kind} severity {level:.2f}   measured quality: " + "  ".join(
            f"{m} {q.score:.2f}" for m, q in quality.items()
        ) + "   (camera + 2D boxes | depth | lidar on image | bird's-eye view)"
        tiles = [camera_tile(frames), depth_tile(frames), projection_tile(frames),
                 bev_tile(frames, clean.image.shape[0])]
        row = np.hstack(tiles)
        band = np.full((LABEL_HEIGHT, row.shape[1], 3), 255, np.uint8)
        cv2.putText(band, label, (6, LABEL_HEIGHT - 7), cv2.FONT_HERSHEY_SIMPLEX, 0.5,
                    (0, 0, 0), 1, cv2.LINE_AA)
        rows.append(np.vstack([band, row]))
    montage = np.vstack(rows)
    if args.scale != 1.0:
        montage = cv2.resize(montage, None, fx=args.scale, fy=args.scale,
                             interpolation=cv2.INTER_AREA)
    bgr = cv2.cvtColor(montage, cv2.COLOR_RGB2BGR)
    if not cv2.imwrite(args.out, bgr, [cv2.IMWRITE_PNG_COMPRESSION, 9]):
        raise SystemExit(f"could not write {args.out}")
    print(f"wrote {args.out} ({len(levels)} levels of {args.corruption})")
    return 0


def camera_tile(frames):
    import cv2
    import numpy as np

    tile = frames.image.copy()
    for label, box in zip(frames.objects.labels, frames.objects.boxes2d, strict=True):
        x1, y1, x2, y2 = (int(round(float(v))) for v in box)
        cv2.rectangle(tile, (x1, y1), (x2 - 1, y2 - 1), BOX_COLOURS[int(label)], 1)
    return np.ascontiguousarray(tile)


def depth_tile(frames):
    import cv2
    import numpy as np

    depth = frames.depth
    scaled = np.clip(np.nan_to_num(depth, nan=DEPTH_MAX) / DEPTH_MAX, 0, 1)
    coloured = cv2.applyColorMap((255 * (1 - scaled) ** 2).astype(np.uint8), cv2.COLORMAP_TURBO)
    coloured = cv2.cvtColor(coloured, cv2.COLOR_BGR2RGB)
    coloured[~np.isfinite(depth)] = 0
    return coloured


def projection_tile(frames):
    import cv2
    import numpy as np

    tile = (frames.image // 2).astype(np.uint8)
    if len(frames.points) == 0:
        return tile
    uv, z = frames.calib.project(frames.points)
    h, w = tile.shape[:2]
    inside = np.isfinite(uv).all(axis=1) & (z > 0)
    uv, z = uv[inside], z[inside]
    inside = (uv[:, 0] >= 0) & (uv[:, 0] < w) & (uv[:, 1] >= 0) & (uv[:, 1] < h)
    uv, z = uv[inside].astype(int), z[inside]
    scaled = np.clip(z / DEPTH_MAX, 0, 1)
    colours = cv2.applyColorMap((255 * (1 - scaled) ** 2).astype(np.uint8)[:, None],
                                cv2.COLORMAP_TURBO)[:, 0, ::-1]
    tile[uv[:, 1], uv[:, 0]] = colours
    return tile


def bev_tile(frames, size: int):
    """Top view, lidar x up the tile, y to the left; footprints of the ground-truth boxes."""
    import cv2
    import numpy as np

    tile = np.full((size, size, 3), 20, np.uint8)
    scale = size / BEV_RANGE

    def to_pixels(xy):
        return np.stack([size / 2 - xy[:, 1] * scale, size - xy[:, 0] * scale], axis=1)

    points = frames.points
    if len(points):
        px = to_pixels(points[:, :2]).astype(int)
        keep = (px[:, 0] >= 0) & (px[:, 0] < size) & (px[:, 1] >= 0) & (px[:, 1] < size)
        height = np.clip((points[keep, 2] + 2.0) / 4.0, 0, 1)
        colours = cv2.applyColorMap((255 * height).astype(np.uint8)[:, None],
                                    cv2.COLORMAP_VIRIDIS)[:, 0, ::-1]
        tile[px[keep, 1], px[keep, 0]] = colours
    for label, corners in zip(frames.objects.labels, frames.objects.corners(), strict=True):
        outline = to_pixels(corners[:4, :2]).round().astype(np.int32)
        cv2.polylines(tile, [outline], True, BOX_COLOURS[int(label)], 1, cv2.LINE_AA)
    return tile
