#!/usr/bin/env python3
"""The gdb stub's protocol, byte by byte, for what gdb itself never sends.

usage: gdb-proto.py SOCKET SYMBOLS probe|test [sw] [watch]

Against tests/guests/gdbguest.S started with --gdb unix:SOCKET --gdb-wait -c 2; SYMBOLS
is a file of "NAME HEX-ADDRESS" lines (counter, count_written, ticks, main64, tick).
probe: does this host stop the guest at debug-register breakpoints, at watchpoints, at
int3? Prints "hwbreak yes|no", "watch yes|no", "swbreak yes|no"; the VM ends (or, where
int3 reaches the guest, dies of it: the int3 probe comes last).
test: one "ok NAME" or "FAIL NAME: why" line per check, exit status 1 on any failure;
sw and watch say what the probe found working (a watchpoint, else an int3, stops the
guest after its write to the counter; with neither that part is left out, and says so).
"""
import select
import socket
import sys
import time

path = sys.argv[1]
sym = {n: int(a, 16) for n, a in (line.split() for line in open(sys.argv[2]))}
counter, count_written, ticks, main64, tick = (sym[n] for n in ("counter", "count_written", "ticks", "main64", "tick"))
mode = sys.argv[3]
have = set(sys.argv[4:])
failed = 0


def check(name, cond, why=""):
    global failed
    if cond:
        print("ok " + name)
    else:
        failed += 1
        print("FAIL %s: %s" % (name, why))


def frame(payload):
    if isinstance(payload, str):
        payload = payload.encode()
    return b"$" + payload + b"#%02x" % (sum(payload) & 0xFF)


class Client:
    def __init__(self):
        self.s = socket.socket(socket.AF_UNIX)
        self.s.settimeout(20)
        self.s.connect(path)
        self.buf = b""

    def raw(self, data):
        self.s.sendall(data)

    def byte(self):
        while not self.buf:
            chunk = self.s.recv(65536)
            if not chunk:
                raise EOFError("the stub closed the connection")
            self.buf += chunk
        b, self.buf = self.buf[:1], self.buf[1:]
        return b

    def packet(self):
        """The next packet (acknowledged); '+'/'-' before it are returned as such."""
        c = self.byte()
        if c in (b"+", b"-"):
            return c
        while c != b"$":
            c = self.byte()
        data = b""
        while True:
            c = self.byte()
            if c == b"#":
                break
            data += c
        csum = self.byte() + self.byte()
        assert int(csum, 16) == sum(data) & 0xFF, "bad checksum from the stub"
        self.raw(b"+")
        return data

    def ask(self, payload):
        """Send a packet; the reply after our '+' comes back."""
        self.raw(frame(payload))
        ack = self.packet()
        assert ack == b"+", "no ack: %r" % ack
        return self.packet()


    def stop(self, seconds):
        """The stop reply to a resume, or None if none comes in time."""
        end = time.time() + seconds
        while not self.buf:
            left = end - time.time()
            if left <= 0 or not select.select([self.s], [], [], left)[0]:
                return None
            chunk = self.s.recv(65536)
            if not chunk:
                return b"closed"
            self.buf += chunk
        return self.packet()


c = Client()
if mode == "probe":
    # ticks large: the guest runs until we end it. DR0 on main64, DR1 on the counter.
    c.ask("qSupported:swbreak+;hwbreak+")
    c.ask("M%x,4:a0860100" % ticks)
    c.ask("Z1,%x,1" % main64)
    c.ask("Z2,%x,4" % counter)
    c.raw(frame("c"))
    c.packet()
    first = c.stop(20)
    hw = first is not None and b"hwbreak" in first
    watch = first is not None and b"watch:" in first
    if hw:
        c.raw(frame("c"))
        c.packet()
        second = c.stop(20)
        watch = second is not None and b"watch:" in second
        if second is None:
            c.raw(b"\x03")
            c.stop(20)
    elif first is None:
        c.raw(b"\x03")
        c.stop(20)
    print("hwbreak", "yes" if hw else "no")
    print("watch", "yes" if watch else "no")
    # Last, since where int3 is not intercepted the guest gets it, and this one dies of it.
    c.ask("z1,%x,1" % main64)
    c.ask("z2,%x,4" % counter)
    c.ask("Z0,%x,1" % tick)
    c.raw(frame("c"))
    c.packet()
    r = c.stop(20)
    print("swbreak", "yes" if r is not None and b"swbreak" in r else "no")
    try:
        if r is None:
            c.raw(b"\x03")
            c.stop(20)
        c.raw(frame("k"))
    except OSError:
        pass
    time.sleep(0.2)
    sys.exit(0)

r = c.ask("qSupported:swbreak+;hwbreak+")
check("qSupported", b"PacketSize=4000" in r and b"qXfer:features:read+" in r, r)

c.raw(b"$g#00")  # wrong checksum
check("bad checksum gets '-'", c.packet() == b"-")
c.raw(frame("?")[:-2] + b"zz")  # not even hex
check("non-hex checksum gets '-'", c.packet() == b"-")
check("malformed m gets an error", c.ask("mzz,4") == b"E01")
check("m without a length gets an error", c.ask("m10000") == b"E01")
check("bad hex in M gets an error", c.ask("M10000,2:zzzz") == b"E01")
check("M longer than its data gets an error", c.ask("M10000,4:00") == b"E01")
check("unknown packet gets the empty reply", c.ask("Jfoo") == b"")
check("unknown thread gets an error", c.ask("Hg63") == b"E02")
check("register out of range gets an error", c.ask("p999") == b"E16")
check("unmapped memory gets EFAULT", c.ask("m7ff00000000,4").startswith(b"E"))
r = c.ask("x" * 0x5000)  # longer than PacketSize
check("an oversized packet gets an error", r == b"E01", r)
check("stop reason at attach", c.ask("?") == b"T05thread:1;")
check("every vCPU a thread", c.ask("qfThreadInfo") == b"m1,2" and c.ask("qsThreadInfo") == b"l")
xml = b""
while True:
    r = c.ask("qXfer:features:read:target.xml:%x,200" % len(xml))
    xml += r[1:]
    if r[:1] != b"m":
        break
check("target description", r[:1] == b"l" and b"i386:x86-64" in xml and b"fs_base" in xml and b"cr3" in xml,
      xml[:80])

# ticks = 100000: the guest runs long enough for the rest; read back what we wrote.
check("M writes guest memory", c.ask("M%x,4:a0860100" % ticks) == b"OK")
check("m reads it back", c.ask("m%x,4" % ticks) == b"a0860100")
# X: binary data with escapes ('}' then the byte xor 0x20) lands as meant.
check("X with escapes", c.ask(b"X%x,4:\x7d\x5d\x7d\x03\x00\x01" % (ticks + 8)) == b"OK")
check("X data read back", c.ask("m%x,4" % (ticks + 8)) == b"7d230001")
check("X of nothing (gdb's probe)", c.ask("X%x,0:" % ticks) == b"OK")

# A write watchpoint stops right after the writing instruction, naming the address.
if "watch" in have or "sw" in have:
    if "watch" in have:
        check("Z2 accepted", c.ask("Z2,%x,4" % counter) == b"OK")
    else:
        print("skip watchpoint: no watchpoint stops on this host (see the probe); an int3 after the write instead")
        check("Z0 accepted", c.ask("Z0,%x,1" % count_written) == b"OK")
    c.raw(frame("vCont;c"))
    check("vCont acknowledged", c.packet() == b"+")
    r = c.packet()
    if "watch" in have:
        check("write watchpoint: stop reply names the address", r.startswith(b"T05thread:1;") and
              (b"watch:%x;" % counter) in r, r)
    else:
        check("software breakpoint: stop reply", r.startswith(b"T05thread:1;") and b"swbreak:;" in r, r)
    rip = int.from_bytes(bytes.fromhex(c.ask("p10").decode()), "little")
    check("stopped right after the writing instruction", rip == count_written,
          "rip %x, count_written %x" % (rip, count_written))
    check("counter as the guest wrote it", c.ask("m%x,4" % counter) == b"01000000")
    if "watch" in have:
        check("z2 removes it", c.ask("z2,%x,4" % counter) == b"OK")
    else:
        check("z0 removes it", c.ask("z0,%x,1" % count_written) == b"OK")
else:
    print("skip stop after a write: neither watchpoints nor int3 stop the guest on this host (see the probe)")
check("z2 of nothing is an error", c.ask("z2,%x,4" % counter) == b"E16")
check("Z1, Z2, Z3, Z4 take the four debug registers",
      [c.ask("Z%d,%x,1" % (k, counter + k)) for k in (1, 2, 3, 4)] == [b"OK"] * 4)
check("a fifth is refused", c.ask("Z2,%x,8" % (counter + 8)) == b"E1c")
check("and they all go", [c.ask("z%d,%x,1" % (k, counter + k)) for k in (1, 2, 3, 4)] == [b"OK"] * 4)
check("an 8-byte unaligned range takes two", c.ask("Z2,%x,8" % (counter + 4)) == b"OK" and
      c.ask("Z4,%x,8" % (counter + 4)) == b"OK" and c.ask("Z3,%x,1" % counter) == b"E1c")
c.ask("z2,%x,8" % (counter + 4))
c.ask("z4,%x,8" % (counter + 4))

# A second debugger is turned away; the first one goes on.
other = socket.socket(socket.AF_UNIX)
other.settimeout(10)
other.connect(path)
try:
    got = other.recv(100)
except OSError as e:
    got = repr(e).encode()
check("a second client is refused (closed at once)", got == b"", got)
other.close()
check("the first client still answers", c.ask("qC") == b"QC1")

# Ctrl-C: every vCPU stops.
c.raw(frame("c"))
check("c acknowledged", c.packet() == b"+")
time.sleep(0.5)
c.raw(b"\x03")
r = c.packet()
check("Ctrl-C stops the VM (T02)", r.startswith(b"T02thread:"), r)
a = c.ask("m%x,4" % counter)
time.sleep(0.3)
check("stopped means stopped", c.ask("m%x,4" % counter) == a)

# k ends the VM (the caller checks lkvm's exit).
c.raw(frame("k"))
time.sleep(0.2)
sys.exit(1 if failed else 0)
