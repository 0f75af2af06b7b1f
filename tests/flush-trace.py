#!/usr/bin/env python3
"""The order of a FLUSH on the host, from strace (tests/durability-tests.sh).

usage: flush-trace.py TRACE IMAGE N DELAY
TRACE is `strace -f -ttt -T -y -x -s 65536` output of lkvm with every fdatasync delayed
DELAY seconds (-e inject=fdatasync:delay_exit=...). The guest wrote 4 KiB block i, fsynced
it and printed "LKVM-FLUSHED i", for i below N. For each i this checks that the image got
a write covering block i, that the write completed, that an fdatasync of the image started
after that and returned (delay included) before the guest printed its line: the guest
learnt of its FLUSH only after the data was on stable storage. One PASS or FAIL line per i.
"""
import codecs
import re
import sys

LINE = re.compile(r'^(\d+) +(\d+\.\d+) (.*)$')


def records(path):
    """(entry, exit, text) per syscall; unfinished/resumed halves joined per thread."""
    pending = {}
    out = []
    for raw in open(path, errors='replace'):
        m = LINE.match(raw.rstrip('\n'))
        if not m:
            continue
        pid, ts, text = m.group(1), float(m.group(2)), m.group(3)
        if text.endswith('<unfinished ...>'):
            pending[pid] = (ts, text[:-len('<unfinished ...>')])
            continue
        r = re.match(r'^<\.\.\. \w+ resumed>(.*)$', text)
        if r and pid in pending:
            t0, head = pending.pop(pid)
            out.append((t0, ts, head.rstrip() + r.group(1)))	# "..., 16 <unfinished ...>" + ") = 16"
            continue
        d = re.search(r'<(\d+\.\d+)>$', text)
        out.append((ts, ts + (float(d.group(1)) if d else 0), text))
    return out


def main():
    path, image, n, delay = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    recs = records(path)
    img = re.escape(image)
    writes, done, syncs, console = [], [], [], []
    for t0, t1, text in recs:
        if text.startswith('io_submit(') and 'IOCB_CMD_PWRITE' in text:
            for cb in text.split('aio_data=')[1:]:	# one iocb each
                if 'IOCB_CMD_PWRITE' not in cb or not re.search(r'aio_fildes=\d+<[^>]*' + img + '>', cb):
                    continue
                off = re.search(r'aio_offset=(\d+)', cb)
                lens = [int(x) for x in re.findall(r'(?:iov_len|aio_nbytes)=(\d+)', cb)]
                if off:
                    writes.append((t0, int(off.group(1)), sum(lens)))
        elif re.match(r'pwrite(v2?|64)\(\d+<[^>]*' + img + '>', text):
            m = re.search(r', (\d+)(?:, \d+)?\) += (\d+)', text)
            if m:
                writes.append((t0, int(m.group(1)), int(m.group(2))))
                done.append(t1)
        elif text.startswith('io_getevents(') and re.search(r'\) += [1-9]', text):
            done.append(t1)
        elif re.match(r'fdatasync\(\d+<[^>]*' + img + '>', text):
            delayed = '(DELAYED)' in text
            syncs.append((t0, t1 + (delay if delayed else 0), delayed))
        elif re.match(r'write\(1<', text):
            s = re.match(r'write\(1<[^>]*>, "(.*)"(?:\.\.\.)?, \d+\)', text)
            if s:
                console.append((t0, codecs.decode(s.group(1), 'unicode_escape')))
    ok = True
    if not syncs:
        print('FAIL flush order: lkvm never called fdatasync on %s, though the guest asked for %d FLUSHes' % (image, n))
        return 1
    if not all(d for _, _, d in syncs):
        print('FAIL flush order: strace delayed %d of %d fdatasyncs of %s: the order would prove nothing'
              % (sum(1 for s in syncs if s[2]), len(syncs), image))
        return 1
    # Where each "LKVM-FLUSHED i" line starts in the console stream, and when that byte left lkvm.
    stream, stamps = '', []
    for t, s in console:
        stream += s
        stamps += [t] * len(s)
    for i in range(n):
        k = stream.find('LKVM-FLUSHED %d\r' % i)
        if k < 0:
            k = stream.find('LKVM-FLUSHED %d\n' % i)
        if k < 0:
            print('FAIL flush %d: the guest never said it was flushed' % i)
            ok = False
            continue
        said = stamps[k]
        w = [t for t, off, ln in writes if off <= i * 4096 and off + ln >= (i + 1) * 4096 and t < said]
        if not w:
            print('FAIL flush %d: no write of block %d reached the image before the guest said it was flushed' % (i, i))
            ok = False
            continue
        wrote = max(w)
        c = [t for t in done if t >= wrote]
        completed = min(c) if c else None
        good = [s for s in syncs if completed is not None and s[0] >= completed and s[1] <= said]
        if good:
            s = min(good, key=lambda x: x[0])
            print('PASS flush %d: write at +%.3fs, completed +%.3fs, fdatasync +%.3fs..+%.3fs (%.0f s of it strace\'s delay), '
                  'guest said so +%.3fs' % (i, 0, completed - wrote, s[0] - wrote, s[1] - wrote, delay, said - wrote))
        else:
            near = [s for s in syncs if s[0] >= wrote]
            print('FAIL flush %d: the guest said it was flushed %.3fs after the write, but no fdatasync of the image '
                  'ran between the write\'s completion (%s) and then (next fdatasync: %s)'
                  % (i, said - wrote, 'at +%.3fs' % (completed - wrote) if completed else 'never',
                     '+%.3fs..+%.3fs' % (near[0][0] - wrote, near[0][1] - wrote) if near else 'none'))
            ok = False
    return 0 if ok else 1


if __name__ == '__main__':
    sys.exit(main())
