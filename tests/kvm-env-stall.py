#!/usr/bin/env python3
"""What the nested machine's vCPUs were doing when it stalled (tests/kvm-env.sh).

usage: kvm-env-stall.py MONITOR_SOCKET KALLSYMS_OR_- > report
       kvm-env-stall.py --nmi MONITOR_SOCKET
Samples every vCPU's registers three times, a second apart, through QEMU's
monitor and names the kernel function at each RIP (KALLSYMS is the nested
kernel's /proc/kallsyms; it boots with nokaslr, so one copy fits every trip).
Prints one line per sample and vCPU, then the raw monitor output, each vCPU's
local APIC (its timer) included. --nmi sends every vCPU an NMI, which wakes a
halted one: whether the machine then lives again tells a lost wake-up from a
machine that is truly stuck.
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
    if sys.argv[1] == '--nmi':
        print(monitor(sys.argv[2], ['nmi']).replace('\r', ''))
        return
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
    # Both vCPUs halted with interrupts on is how these stalls look since 2026-12-04: their timers.
    cpus = sorted(set(re.findall(r'CPU #(\d+):', raw)))
    for cpu in cpus:
        out = monitor(sys.argv[1], ['cpu ' + cpu, 'info lapic']).replace('\r', '')
        raw += out
        # The timer's mode and count, and what waits in IRR/ISR: a vector pending for a halted
        # vCPU with interrupts on is an interrupt QEMU did not deliver.
        keep = [re.sub(r'\s+', ' ', l).strip() for l in re.sub(r'\x1b\[[0-9;]*[A-Za-z]', '', out).split('\n')
                if re.match(r'^(LVTT|Timer|ISR|IRR)\b', l.strip())]
        print('lapic cpu %s: %s' % (cpu, '; '.join(keep) or 'no info lapic output'))
    print('\n--- raw monitor output ---')
    print(re.sub(r'\x1b\[[0-9;]*[A-Za-z]', '', raw))


if __name__ == '__main__':
    main()
