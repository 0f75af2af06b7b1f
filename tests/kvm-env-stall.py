#!/usr/bin/env python3
"""What the nested machine's vCPUs were doing when it stalled (tests/kvm-env.sh).

usage: kvm-env-stall.py MONITOR_SOCKET KALLSYMS_OR_- > report
Samples every vCPU's registers three times, a second apart, through QEMU's
monitor and names the kernel function at each RIP (KALLSYMS is the nested
kernel's /proc/kallsyms; it boots with nokaslr, so one copy fits every trip).
Prints one line per sample and vCPU, then the raw monitor output.
"""
import bisect
import re
import socket
import sys
import time


def monitor(path, cmds):
    s = socket.socket(socket.AF_UNIX)
    s.connect(path)
    s.settimeout(3)
    out = ''
    for cmd in cmds:
        s.sendall((cmd + '\n').encode())
        time.sleep(1)
        try:
            while True:
                b = s.recv(1 << 20)
                if not b:
                    break
                out += b.decode(errors='replace')
                if len(b) < (1 << 20):
                    break
        except socket.timeout:
            pass
    return out


def symbols(path):
    syms = []
    try:
        for line in open(path):
            f = line.split()
            if len(f) >= 3 and f[1] in 'tTwW':
                syms.append((int(f[0], 16), f[2]))
    except OSError:
        pass
    syms.sort()
    return syms


def name(syms, keys, rip):
    i = bisect.bisect_right(keys, rip) - 1
    return '%s+0x%x' % (syms[i][1], rip - syms[i][0]) if i >= 0 and rip - syms[i][0] < 0x10000 else '?'


def main():
    syms = symbols(sys.argv[2])
    keys = [a for a, _ in syms]
    raw = ''
    for sample in range(3):
        out = monitor(sys.argv[1], ['info registers -a']).replace('\r', '')
        raw += out
        for cpu, rip, rfl, cpl, hlt in re.findall(
                r'CPU#(\d+)\n(?:.*\n)*?RIP=([0-9a-f]+) RFL=([0-9a-f]+) \[.*?\] CPL=(\d) .*?HLT=(\d)', out):
            r, f = int(rip, 16), int(rfl, 16)
            print('sample %d cpu %s rip %s %s cpl %s if=%d halted=%s'
                  % (sample, cpu, rip, name(syms, keys, r), cpl, (f >> 9) & 1, hlt))
    raw += monitor(sys.argv[1], ['info cpus', 'info irq', 'info pic']).replace('\r', '')
    print('\n--- raw monitor output ---')
    print(re.sub(r'\x1b\[[0-9;]*[A-Za-z]', '', raw))


if __name__ == '__main__':
    main()
