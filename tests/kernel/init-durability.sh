# /etc/lkvm-init for the durability test: write a pattern through virtio-blk,
# make dd fsync it (the kernel sends a FLUSH), say so, then wait to be killed.
i=0
while [ $i -lt 64 ]; do echo "durable-block-$i"; i=$((i + 1)); done > /tmp/pattern
dd if=/tmp/pattern of=/dev/vda bs=4096 conv=fsync,notrunc 2>/dev/null && echo "LKVM-FLUSHED $(wc -c < /tmp/pattern)"
while :; do sleep 10; done
