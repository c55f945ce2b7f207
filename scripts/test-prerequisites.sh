#!/usr/bin/env bash
# What `npm test` needs beside node_modules: Debian packages and a running RabbitMQ at 127.0.0.1:5672.
# Installs what is missing when it can (root with apt-get), starts RabbitMQ when it is down, and otherwise
# stops at once with the exact command to run. Safe to run again: it only acts on what is missing.
set -euo pipefail

missing=()
need() { # need <debian-package> <test that succeeds when present>
  local package=$1
  shift
  "$@" >/dev/null 2>&1 || missing+=("$package")
}
# The RabbitMQ server: the tests talk to a real broker.
need rabbitmq-server command -v rabbitmq-server
# libfaketime: the clock-skew lock tests run holders whose clocks are hours off.
need faketime test -e /usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1
# Chromium: the status page's browser test drives Debian's chromium through playwright-core (no download).
need chromium test -x /usr/bin/chromium
# pika: a publisher written in Python from docs/protocol.md only (Debian's package lands in /usr/bin/python3,
# which a pyenv or venv python3 may shadow: the test uses whichever has it).
need python3-pika sh -c "python3 -c 'import pika' || /usr/bin/python3 -c 'import pika'"
# spin: the lock protocol's model check (libs/locking/model).
need spin command -v spin
# sshd and sshfs: the shared folder over a network mount (test/support/loopback-sshfs.ts and the
# multi-host bed, test/support/hosts); nsenter and ip for the bed's network namespaces.
need openssh-server test -x /usr/sbin/sshd
need sshfs command -v sshfs
need iproute2 command -v ip
need util-linux command -v nsenter
# openssl: the TLS tests make their own CA and certificates (test/support/test-pki.ts).
need openssl command -v openssl
# systemd-analyze: the systemd units of deploy/ are checked with `systemd-analyze verify`; git: the
# mixed-version campaign builds the previous release from this clone's history.
need systemd command -v systemd-analyze
need git command -v git
# CephFS and GlusterFS beds of the tests' own (test/support/shared-fs): the shared folder on the file
# systems cells use, each server and FUSE client a child process of the test.
need ceph-mon command -v ceph-mon
need ceph-osd command -v ceph-osd
need ceph-mds command -v ceph-mds
need ceph-fuse command -v ceph-fuse
need ceph-common command -v ceph
need glusterfs-server command -v glusterd
need glusterfs-client command -v glusterfs

if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "test prerequisites: installing ${missing[*]}" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "test prerequisites missing: ${missing[*]}" >&2
    echo "run: sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
fi

if ! rabbitmq-diagnostics -q ping >/dev/null 2>&1; then
  if [ "$(id -u)" != 0 ]; then
    echo "RabbitMQ is not running at 127.0.0.1:5672; run: sudo rabbitmq-server -detached" >&2
    exit 1
  fi
  echo "test prerequisites: starting RabbitMQ (rabbitmq-server -detached)" >&2
  rabbitmq-server -detached
  for _ in $(seq 1 60); do rabbitmq-diagnostics -q ping >/dev/null 2>&1 && break; sleep 2; done
  rabbitmq-diagnostics -q ping >/dev/null 2>&1 || { echo "RabbitMQ did not start; see /var/log/rabbitmq/" >&2; exit 1; }
  rabbitmqctl -q await_startup
fi
