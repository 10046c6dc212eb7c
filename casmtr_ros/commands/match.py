"""``casmtr-vo match IMG0 IMG1``: match two images, draw the matches coloured by confidence, optionally as JSON."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from casmtr_ros.commands.replay import add_matcher_arguments


def run(args: argparse.Namespace) -> int:
    from casmtr_ros.evaluation.common import load_image, make_matcher, parse_options, timed_match
    from casmtr_ros.evaluation.viz import save_matches

    name = args.variant or args.matcher
    matcher, note = make_matcher(name, args.weights, parse_options(args.matcher_opt))
    if note:
        print(note)
    img0, img1 = load_image(args.image0), load_image(args.image1)
    matches, seconds = timed_match(matcher, img0, img1)
    label = getattr(matcher, "name", name)
    print(f"{label}: {len(matches)} matches in {seconds * 1000:.0f} ms"
          + (f", mean confidence {matches.confidence.mean():.3f}" if len(matches) else ""))
    if args.out:
        save_matches(args.out, img0, img1, matches, max_matches=args.max_draw, title=label)
        print(f"wrote {args.out}")
    if args.json:
        payload = {"matcher": label, "image0": str(args.image0), "image1": str(args.image1),
                   "time_s": seconds, "count": len(matches), "kpts0": matches.kpts0.tolist(),
                   "kpts1": matches.kpts1.tolist(), "confidence": matches.confidence.tolist()}
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(payload) + "\n")
        print(f"wrote {args.json}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("match", help="match two images and draw the matches", description=__doc__)
    p.add_argument("image0")
    p.add_argument("image1")
    p.add_argument("--variant", default=None, help="CasMTR variant or any matcher name (same as --matcher)")
    add_matcher_arguments(p)
    p.add_argument("--out", default=None, help="PNG with the matches drawn")
    p.add_argument("--json", default=None, help="JSON with kpts0, kpts1 (original pixels) and confidence")
    p.add_argument("--max-draw", type=int, default=300, help="draw at most this many (most confident) matches")
    p.set_defaults(func=run)
