#!/usr/bin/env python3
"""Every relative link in the docs points at something that exists.

For each Markdown file given (default: README.md and docs/*.md), every
link [text](target) outside code blocks whose target is not a URL must
name a file or directory that exists, relative to the file; and a
target with #anchor (or a bare #anchor, for the same file) must match a
heading of that Markdown file, slugged as GitHub does: lower-case,
punctuation except '-' and '_' removed, spaces to '-', and -1, -2, ...
after repeated headings.

    scripts/check-links.py                 README.md and docs/*.md
    scripts/check-links.py xcaddy.md ...   these files

Exits 1, listing each broken link as file:line, when one is broken.
Needs only python3.
"""
import glob
import os
import re
import sys

LINK = re.compile(r'\[((?:[^\[\]]|\[[^\]]*\])*)\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)')
FENCE = re.compile(r'^\s{0,3}(```|~~~)')
HEADING = re.compile(r'^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$')
HTML_ID = re.compile(r'<a\s+(?:name|id)="([^"]+)"')


def lines_outside_code(path):
    """Yields (line number, line) of the lines outside fenced code blocks."""
    fence = None
    with open(path, encoding='utf-8') as f:
        for n, line in enumerate(f, 1):
            m = FENCE.match(line)
            if m:
                if fence is None:
                    fence = m.group(1)
                elif m.group(1) == fence:
                    fence = None
                continue
            if fence is None:
                yield n, line.rstrip('\n')


def slug(heading):
    """GitHub's anchor for a heading's text."""
    text = re.sub(r'\[([^\]]*)\]\([^)]*\)', r'\1', heading)  # a link: its text
    text = text.strip().lower()
    text = re.sub(r'[^\w\- ]', '', text)  # \w keeps letters, digits, '_'
    return text.replace(' ', '-')


_anchors = {}


def anchors(path):
    """The anchors of a Markdown file: its headings' slugs and HTML ids."""
    if path not in _anchors:
        seen, found = {}, set()
        for _, line in lines_outside_code(path):
            m = HEADING.match(line)
            if m:
                s = slug(m.group(2))
                found.add(s if s not in seen else '%s-%d' % (s, seen[s]))
                seen[s] = seen.get(s, 0) + 1
            found.update(HTML_ID.findall(line))
        _anchors[path] = found
    return _anchors[path]


def check(path):
    broken, count = [], 0
    for n, line in lines_outside_code(path):
        # A link does not start inside an inline code span.
        spans = [m.span() for m in re.finditer(r'(`+).*?\1', line)]
        for m in LINK.finditer(line):
            if any(a < m.start() < b for a, b in spans):
                continue
            target = m.group(2)
            if re.match(r'^[a-zA-Z][a-zA-Z0-9+.-]*:', target):  # https:, mailto:
                continue
            count += 1
            file_part, _, anchor = target.partition('#')
            dest = os.path.normpath(os.path.join(os.path.dirname(path), file_part)) if file_part else path
            if not os.path.exists(dest):
                broken.append('%s:%d: %s: %s does not exist' % (path, n, target, dest))
                continue
            if anchor:
                if not dest.endswith('.md') or os.path.isdir(dest):
                    broken.append('%s:%d: %s: an anchor into %s, which is not Markdown' % (path, n, target, dest))
                elif anchor not in anchors(dest):
                    broken.append('%s:%d: %s: %s has no heading #%s' % (path, n, target, dest, anchor))
    return broken, count


def main(args):
    os.chdir(os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))
    files = args or ['README.md'] + sorted(glob.glob('docs/*.md'))
    broken, total = [], 0
    for path in files:
        b, c = check(path)
        broken += b
        total += c
    for b in broken:
        print(b)
    print('%d relative links in %d files, %d broken' % (total, len(files), len(broken)))
    return 1 if broken else 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
