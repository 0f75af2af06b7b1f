#!/usr/bin/env python3
"""Draw the ratios of bench/README.md's results as one SVG bar chart.

Every table row after the results marker whose ratio is in bold (**0.97**)
becomes a bar; 1.0 (as fast as the peer or the host) is marked. Standard
library only: the SVG is written by hand.

Usage: chart.py README.md OUT.svg
"""
import html
import re
import sys

ROW = re.compile(r'^\|\s*([^|]+?)\s*\|.*\*\*([0-9.]+)\*\*')
HEAD = re.compile(r'^###\s+(.*)')


def rows(text):
    """(section, label, ratio) for every bold ratio after the results marker."""
    out, section = [], ''
    after = text.split('<!-- results -->', 1)[-1]
    for line in after.splitlines():
        m = HEAD.match(line)
        if m:
            section = re.sub(r'\s*\(.*', '', m.group(1))
            continue
        m = ROW.match(line)
        if m:
            out.append((section, m.group(1), float(m.group(2))))
    return out


def svg(data):
    bar_h, gap, left, width, top = 16, 4, 560, 360, 40
    vmax = max([1.5] + [min(r, 3.0) for _, _, r in data])
    scale = width / vmax
    lines = []
    y = top
    section = None
    for sec, label, ratio in data:
        if sec != section:
            section = sec
            y += 8
            lines.append(f'<text x="4" y="{y + 12}" font-weight="bold">{html.escape(sec)}</text>')
            y += bar_h + gap
        w = min(ratio, vmax) * scale
        colour = '#3a7d44' if ratio >= 0.9 else '#d9a21b' if ratio >= 0.5 else '#b33a3a'
        lines.append(f'<text x="{left - 6}" y="{y + 12}" text-anchor="end">{html.escape(label[:90])}</text>')
        lines.append(f'<rect x="{left}" y="{y}" width="{w:.1f}" height="{bar_h}" fill="{colour}"/>')
        lines.append(f'<text x="{left + w + 4:.1f}" y="{y + 12}">{ratio:.2f}</text>')
        y += bar_h + gap
    height = y + 20
    one = left + scale
    head = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{left + width + 60}" height="{height}" '
        f'font-family="sans-serif" font-size="11">',
        f'<rect width="100%" height="100%" fill="white"/>',
        f'<text x="4" y="16" font-size="14" font-weight="bold">lkvm / peer or host, same run '
        f'(1.00 = as fast; bars cut at {vmax:.1f})</text>',
        f'<line x1="{one:.1f}" y1="{top}" x2="{one:.1f}" y2="{y}" stroke="black" stroke-dasharray="4,3"/>',
        f'<text x="{one:.1f}" y="{top - 4}" text-anchor="middle">1.0</text>',
    ]
    return '\n'.join(head + lines + ['</svg>', ''])


def main():
    if len(sys.argv) != 3:
        sys.exit('usage: chart.py README.md OUT.svg')
    with open(sys.argv[1]) as f:
        data = rows(f.read())
    if not data:
        sys.exit(f'{sys.argv[1]}: no ratios after the results marker')
    with open(sys.argv[2], 'w') as f:
        f.write(svg(data))


if __name__ == '__main__':
    main()
