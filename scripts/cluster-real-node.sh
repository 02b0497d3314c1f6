# shellcheck shell=bash
# The real node of scripts/cluster (sourced by it; not run on its own): one
# real kubelet with containerd, runc and the CNI bridge beside the KWOK nodes,
# so app containers really run. See the header of scripts/cluster for the
# settings and ../shared facts in README.md ("The real node").
#
# Layout (all per cluster: names derive from the state dir, so the dev and
# the test cluster can each have one):
# - Processes: containerd and the kubelet run in a private mount namespace
#   (tmpfs on /run and /var/lib, $NODE_DIR/log on /var/log, stand-in files
#   over the kernel tunables the kubelet writes), so they write nothing to
#   the host's /run, /var/lib, /var/log or /proc/sys. Both stay in the host's
#   network namespace: the kubelet reaches the apiserver and containerd pulls
#   images from registries on the host's 127.0.0.1 (the suite's registry;
#   containerd speaks plain HTTP to loopback registries with a port).
# - Network: a network namespace of its own ($NODE_DIR/netns) joined to the
#   host by a veth pair on the first /30 of IRIS_CLUSTER_REAL_NODE_CIDR (host
#   .1, namespace .2). The CNI bridge plugin runs inside that namespace (its
#   binary is wrapped in nsenter), so the bridge and the pods' addresses (the
#   upper /25) live there. The host routes the pod /25 via the veth; pods get
#   a route to the /30 only. The namespace forwards between the veth and the
#   bridge (its own ip_forward); nothing is masqueraded, and neither the
#   namespace nor the pods have a default route: traffic flows only between
#   the host and the namespace.
# - Node IP: the host's end of the veth (.1), where the kubelet listens. It
#   cannot be loopback (the kubelet refuses), and an address inside the
#   namespace could not reach the apiserver, which listens on 127.0.0.1 only.
# - Cgroups: the kubelet's cgroupRoot /iris-node-<hash> (cgroup v1,
#   cgroupfs driver), removed deepest first by `down`.
# - Images: containerd's sandbox image is a static pause binary built here
#   and imported at start (no image comes from outside); apps' images come
#   from whatever registry their pod names (the suite pushes its own).

REAL_NODE_NAME=iris-real-node
# The node is an isolation segment: Iris places an LRP whose placement tag
# is REAL_NODE_SEGMENT there (nodeAffinity on the label, a toleration for
# the taint); Iris's isolation_segment_label must be REAL_NODE_LABEL (its
# default).
REAL_NODE_SEGMENT=real-node
REAL_NODE_LABEL=cloudfoundry.org/isolation-segment
PAUSE_IMAGE=iris.local/pause:1
CONTAINERD_VERSION=v2.4.2
RUNC_VERSION=v1.5.3
CNI_PLUGINS_VERSION=v1.9.1
NODE_LDFLAGS="-s -w"
# The tunables the kubelet sets (protectKernelDefaults: false): inside the
# node's mount namespace each is a stand-in file.
KERNEL_TUNABLES=(vm/overcommit_memory vm/panic_on_oom kernel/panic kernel/panic_on_oops kernel/keys/root_maxkeys kernel/keys/root_maxbytes)

NODE_DIR() { echo "$STATE_DIR/node"; }
node_hash() { printf '%s' "$STATE_DIR" | sha256sum | cut -c1-8; }
node_host_if() { echo "irn$(node_hash)"; }
node_cgroup() { echo "iris-node-$(node_hash)"; }
node_prefix() { echo "${REAL_NODE_CIDR%.0/24}"; }
node_ip() { echo "$(node_prefix).1"; }
node_netns_ip() { echo "$(node_prefix).2"; }
node_pod_subnet() { echo "$(node_prefix).128/25"; }

real_node_wanted() { [[ "$REAL_NODE" != false ]]; }

# real_node_check decides whether this machine can run the node: with
# IRIS_CLUSTER_REAL_NODE=auto a missing prerequisite turns it off with a
# message, with true it is an error.
real_node_check() {
  [[ "$REAL_NODE" =~ ^(auto|true|false)$ ]] || die "IRIS_CLUSTER_REAL_NODE must be auto, true or false, got '$REAL_NODE'"
  [[ "$REAL_NODE_CIDR" =~ ^([0-9]+\.){3}0/24$ ]] || die "IRIS_CLUSTER_REAL_NODE_CIDR must be a /24 like 198.18.0.0/24, got '$REAL_NODE_CIDR'"
  [[ "$KUBELET_PORT" =~ ^[0-9]+$ && "$KUBELET_HEALTHZ_PORT" =~ ^[0-9]+$ ]] || die "IRIS_KUBELET_PORT and IRIS_KUBELET_HEALTHZ_PORT must be numbers"
  [[ "$REAL_NODE" == false ]] && return 0
  local missing=() t
  ((EUID == 0)) || missing+=("root (it runs containers and creates namespaces)")
  grep -qw overlay /proc/filesystems || missing+=("overlayfs")
  [[ -f /sys/fs/cgroup/memory/memory.limit_in_bytes && -d /sys/fs/cgroup/pids && -d /sys/fs/cgroup/cpu ]] ||
    missing+=("cgroup v1 with the memory, cpu and pids controllers (verified only there)")
  for t in unshare nsenter ip mount; do command -v "$t" >/dev/null || missing+=("$t"); done
  # The node's mount namespace puts its own tmpfs and directory over these.
  case "$(realpath -m "$STATE_DIR")/" in
    /run/* | /var/run/* | /var/lib/* | /var/log/*) missing+=("a state dir outside /run, /var/lib and /var/log (IRIS_CLUSTER_STATE_DIR)") ;;
  esac
  ((${#missing[@]} == 0)) && return 0
  if [[ "$REAL_NODE" == true ]]; then
    die "IRIS_CLUSTER_REAL_NODE=true, but the real node needs what is missing here: ${missing[*]}"
  fi
  log "no real node: it needs what is missing here: ${missing[*]}; KWOK nodes only (IRIS_CLUSTER_REAL_NODE=false silences this)"
  REAL_NODE=false
}

# ---------------------------------------------------------------- build ----

node_cache_key() {
  {
    go_env go version
    echo "$CONTAINERD_VERSION $RUNC_VERSION $CNI_PLUGINS_VERSION $NODE_LDFLAGS $PAUSE_IMAGE"
    cd "$TOOLS/node"
    cat go.mod go.sum pause/*.go pauseimage/*.go
  } | sha256sum | cut -c1-16
}

node_bin_dir() { echo "$CACHE_DIR/bin/node-$(node_cache_key)"; }

# ensure_runc_build_deps installs what runc's seccomp support compiles
# against (Debian's libseccomp-dev, a C compiler, pkg-config) when missing.
ensure_runc_build_deps() {
  command -v gcc >/dev/null && command -v pkg-config >/dev/null && pkg-config --exists libseccomp && return 0
  ((EUID == 0)) && command -v apt-get >/dev/null ||
    die "runc needs libseccomp-dev, gcc and pkg-config: install them (apt-get install libseccomp-dev gcc pkg-config) or run this as root"
  log "installing libseccomp-dev, gcc and pkg-config from Debian (for runc; log in $CACHE_DIR/apt-get.log)"
  mkdir -p "$CACHE_DIR"
  {
    apt-get update &&
      DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends libseccomp-dev gcc libc6-dev pkg-config
  } >>"$CACHE_DIR/apt-get.log" 2>&1 || die "apt-get install libseccomp-dev gcc pkg-config failed (see $CACHE_DIR/apt-get.log)"
}

# ensure_busybox_static installs Debian's busybox-static when missing: the
# integration suite builds the stack image of its real buildpack stagings
# from its /bin/busybox (pulling no image). Only a warning when it cannot:
# those specs then skip and say why.
ensure_busybox_static() {
  dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q 'install ok installed' && return 0
  if ! ((EUID == 0)) || ! command -v apt-get >/dev/null; then
    log "warning: busybox-static is not installed (apt-get install busybox-static): the real-node buildpack staging specs will skip"
    return 0
  fi
  log "installing busybox-static from Debian (for the suite's test stack image; log in $CACHE_DIR/apt-get.log)"
  mkdir -p "$CACHE_DIR"
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends busybox-static >>"$CACHE_DIR/apt-get.log" 2>&1 ||
    log "warning: apt-get install busybox-static failed (see $CACHE_DIR/apt-get.log): the real-node buildpack staging specs will skip"
}

# build_node_tools builds containerd, its runc shim, ctr, runc and the CNI
# plugins (each `go install`ed at its pinned version, with its own go.mod) and
# the pause image, into their own cache directory. The kubelet is a tool of
# the cluster-tools module (it shares most packages with the control plane).
build_node_tools() {
  local dir tmp start b
  dir="$(node_bin_dir)"
  if [[ -d "$dir" ]]; then
    log "real node binaries up to date in $dir"
    return 0
  fi
  ensure_runc_build_deps
  mkdir -p "$CACHE_DIR/bin"
  tmp="$(mktemp -d "$CACHE_DIR/bin/.build.XXXXXX")"
  # shellcheck disable=SC2064
  trap "rm -rf '$tmp'" EXIT
  start="$(now)"
  log "building containerd $CONTAINERD_VERSION, runc $RUNC_VERSION, CNI plugins $CNI_PLUGINS_VERSION and the pause image into $dir (takes minutes the first time)"
  local cni=github.com/containernetworking/plugins/plugins containerd=github.com/containerd/containerd/v2/cmd
  (
    cd "$TOOLS/node" &&
      go_env GOBIN="$tmp" go install -trimpath -ldflags "$NODE_LDFLAGS" \
        "$cni/main/bridge@$CNI_PLUGINS_VERSION" "$cni/main/loopback@$CNI_PLUGINS_VERSION" \
        "$cni/ipam/host-local@$CNI_PLUGINS_VERSION" &&
      go_env CGO_ENABLED=1 GOBIN="$tmp" go install -trimpath -tags seccomp -ldflags "$NODE_LDFLAGS" \
        "github.com/opencontainers/runc@$RUNC_VERSION" &&
      go_env GOBIN="$tmp" go install -trimpath -tags urfave_cli_no_docs -ldflags "$NODE_LDFLAGS" \
        "$containerd/containerd@$CONTAINERD_VERSION" "$containerd/containerd-shim-runc-v2@$CONTAINERD_VERSION" \
        "$containerd/ctr@$CONTAINERD_VERSION" &&
      go_env go build -trimpath -ldflags "-s -w" -o "$tmp/" ./pause ./pauseimage &&
      "$tmp/pauseimage" -binary "$tmp/pause" -image "$PAUSE_IMAGE" -out "$tmp/pause.tar"
  ) || die "real node build failed"
  chmod 755 "$tmp"
  for b in containerd containerd-shim-runc-v2 ctr runc bridge loopback host-local pause.tar; do
    [[ -e "$tmp/$b" ]] || die "build did not produce $b"
  done
  if ! mv -T "$tmp" "$dir" 2>/dev/null; then
    [[ -d "$dir" ]] || die "could not move the real node binaries to $dir"
    rm -rf "$tmp" # a concurrent build finished first
  fi
  trap - EXIT
  log "built the real node in $(since "$start") ($(du -sh "$dir" | cut -f1))"
}

# ------------------------------------------------------------------- up ----

real_node_healthy() {
  pid_of containerd >/dev/null && pid_of kubelet >/dev/null || return 1
  [[ -f "$(NODE_DIR)/up" && "$(cat "$(NODE_DIR)/bin-dir" 2>/dev/null)" == "$NODE_BIN" ]] || return 1
  real_node_ready
}

real_node_ready() {
  [[ "$(kubectl get node "$REAL_NODE_NAME" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" == True ]]
}

fail_real_node() { # name message: stop the node (and the cluster, if this run started it)
  local logf="$STATE_DIR/logs/$1.log"
  log "error: $1 $2"
  if [[ -f "$logf" ]]; then
    log "last lines of $logf:"
    tail -n 40 "$logf" | sed 's/^/    /' >&2
  fi
  log "stopping what was started (logs stay in $STATE_DIR/logs)"
  if [[ "${STARTED_CLUSTER:-false}" == true ]]; then stop_all; else stop_real_node; fi
  exit 1
}

up_real_node() {
  local start dir pid
  start="$(now)"
  NODE_BIN="$(node_bin_dir)"
  dir="$(NODE_DIR)"
  if real_node_healthy; then
    log "real node $REAL_NODE_NAME already up and Ready"
    return 0
  fi
  if [[ -d "$dir" ]]; then
    log "real node in $dir is partly running, not Ready or runs other binaries; restarting it"
    stop_real_node
  fi
  check_real_node_free
  ensure_busybox_static
  mkdir -p "$dir"/{log,cni,cni-bin,tunables,proc} "$STATE_DIR/logs" "$STATE_DIR/pids"
  echo "$NODE_BIN" >"$dir/bin-dir"
  write_kubeconfig "$dir/kubelet.kubeconfig" real-node "system:node:$REAL_NODE_NAME"
  write_node_files "$dir"
  setup_node_network "$dir" || fail_real_node kubelet "could not set up its network namespace"
  setup_node_cgroups || fail_real_node kubelet "could not create its cgroup root $(node_cgroup)"

  log "starting containerd and the kubelet of $REAL_NODE_NAME (node IP $(node_ip), pods in $(node_pod_subnet))"
  start containerd unshare --mount --propagation private -- "$dir/enter" "$NODE_BIN/containerd" --config "$dir/containerd.toml"
  pid="$(pid_of containerd)" || fail_real_node containerd "exited right after starting"
  readlink "/proc/$pid/ns/mnt" >"$dir/mntns"
  local deadline=$((SECONDS + TIMEOUT))
  until "$NODE_BIN/ctr" --address "$dir/containerd.sock" version >/dev/null 2>&1; do
    pid_of containerd >/dev/null || fail_real_node containerd "exited while starting"
    ((SECONDS < deadline)) || fail_real_node containerd "did not answer on $dir/containerd.sock within ${TIMEOUT}s"
    sleep 0.1
  done
  "$NODE_BIN/ctr" --address "$dir/containerd.sock" -n k8s.io images import --local "$NODE_BIN/pause.tar" \
    >>"$STATE_DIR/logs/containerd.log" 2>&1 || fail_real_node containerd "did not import the pause image"

  start kubelet nsenter --mount="/proc/$pid/ns/mnt" -- "$BIN/kubelet" \
    --config="$dir/kubelet.yaml" --kubeconfig="$dir/kubelet.kubeconfig" \
    --hostname-override="$REAL_NODE_NAME" --node-ip="$(node_ip)" \
    --node-labels="type=real,$REAL_NODE_LABEL=$REAL_NODE_SEGMENT" --v=1
  wait_ready kubelet "http://127.0.0.1:$KUBELET_HEALTHZ_PORT/healthz"
  wait_api "node $REAL_NODE_NAME Ready" real_node_ready || fail_real_node kubelet "did not make $REAL_NODE_NAME Ready within ${TIMEOUT}s"
  touch "$dir/up"
  log "real node $REAL_NODE_NAME Ready in $(since "$start"): placement tag $REAL_NODE_SEGMENT, pod logs in $dir/log/pods"
}

check_real_node_free() {
  local busy=()
  port_open "$KUBELET_HEALTHZ_PORT" && busy+=("port $KUBELET_HEALTHZ_PORT (IRIS_KUBELET_HEALTHZ_PORT)")
  [[ -z "$(ip -4 -o addr show to "$REAL_NODE_CIDR")" && -z "$(ip -4 route show root "$REAL_NODE_CIDR")" ]] ||
    busy+=("$REAL_NODE_CIDR (IRIS_CLUSTER_REAL_NODE_CIDR has addresses or routes on this machine: another cluster's real node?)")
  ((${#busy[@]} == 0)) && return 0
  log "error: already in use: ${busy[*]}. Set others (see the header of scripts/cluster) or IRIS_CLUSTER_REAL_NODE=false."
  if [[ "${STARTED_CLUSTER:-false}" == true ]]; then stop_all; fi
  exit 1
}

write_node_files() { # dir
  local dir="$1" t f
  # Runs as the node's first process, in its new mount namespace: the
  # mounts, then exec containerd (so the pid stays).
  {
    echo '#!/usr/bin/env bash'
    echo '# Generated by scripts/cluster: the real node mount namespace, then exec "$@".'
    echo 'set -euo pipefail'
    echo 'mount -t tmpfs -o mode=755 iris-node-run /run'
    echo 'mount -t tmpfs -o mode=755 iris-node-var-lib /var/lib'
    printf 'mount --bind %q /var/log\n' "$dir/log"
    for t in "${KERNEL_TUNABLES[@]}"; do
      [[ -f "/proc/sys/$t" ]] || continue # not in every kernel
      f="$dir/tunables/${t//\//.}"
      cat "/proc/sys/$t" >"$f"
      printf 'mount --bind %q %q\n' "$f" "/proc/sys/$t"
    done
    # The stand-ins leave /proc not "fully visible", and the kernel lets a
    # user namespace mount a new proc only where some proc mount of its
    # mount namespace is (mount_too_revealing): without this one, runc
    # cannot mount /proc in pods with hostUsers: false ("error mounting
    # proc to rootfs at /proc: operation not permitted").
    printf 'mount -t proc iris-node-proc %q\n' "$dir/proc"
    printf 'export PATH=%q\n' "$NODE_BIN:$PATH"
    echo 'exec "$@"'
  } >"$dir/enter"
  chmod 755 "$dir/enter"

  # CNI: the bridge plugin runs inside the node's network namespace, so the
  # bridge is created there; loopback and host-local need no wrapping.
  printf '#!/bin/sh\nexec nsenter --net=%q %q "$@"\n' "$dir/netns" "$NODE_BIN/bridge" >"$dir/cni-bin/bridge"
  chmod 755 "$dir/cni-bin/bridge"
  ln -sf "$NODE_BIN/loopback" "$dir/cni-bin/loopback"
  ln -sf "$NODE_BIN/host-local" "$dir/cni-bin/host-local"
  cat >"$dir/cni/10-iris.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "iris-real-node",
  "plugins": [{
    "type": "bridge",
    "bridge": "irisbr0",
    "isGateway": true,
    "isDefaultGateway": false,
    "ipMasq": false,
    "hairpinMode": false,
    "ipam": {
      "type": "host-local",
      "ranges": [[{"subnet": "$(node_pod_subnet)", "gateway": "$(node_prefix).129"}]],
      "routes": [{"dst": "$(node_prefix).0/30"}]
    }
  }]
}
EOF

  cat >"$dir/containerd.toml" <<EOF
# Generated by scripts/cluster. /run and /var/lib are the node's own tmpfs
# (its mount namespace); the socket is in the state dir so ctr on the host
# reaches it.
version = 3
root = "/var/lib/containerd"
state = "/run/containerd"

[grpc]
  address = "$dir/containerd.sock"

[plugins]
  [plugins.'io.containerd.cri.v1.images']
    snapshotter = 'overlayfs'
    [plugins.'io.containerd.cri.v1.images'.pinned_images]
      sandbox = '$PAUSE_IMAGE'
  [plugins.'io.containerd.cri.v1.runtime']
    # No CAP_SYS_RESOURCE on these VMs: runc cannot lower oom_score_adj.
    restrict_oom_score_adj = true
    netns_mounts_under_state_dir = true
    [plugins.'io.containerd.cri.v1.runtime'.containerd]
      default_runtime_name = 'runc'
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
        runtime_type = 'io.containerd.runc.v2'
        [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
          BinaryName = '$NODE_BIN/runc'
          SystemdCgroup = false
    [plugins.'io.containerd.cri.v1.runtime'.cni]
      bin_dirs = ['$dir/cni-bin']
      conf_dir = '$dir/cni'
      max_conf_num = 1
  [plugins.'io.containerd.grpc.v1.cri']
    disable_tcp_service = true
    stream_server_address = '127.0.0.1'
    stream_server_port = '0'
EOF

  cat >"$dir/kubelet.yaml" <<EOF
# Generated by scripts/cluster. The kubelet's own paths are defaults under
# /var/lib/kubelet, a tmpfs of the node's mount namespace.
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $(node_ip)
port: $KUBELET_PORT
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $KUBELET_HEALTHZ_PORT
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $STATE_DIR/pki/ca.crt}
authorization:
  mode: Webhook
containerRuntimeEndpoint: unix://$dir/containerd.sock
cgroupDriver: cgroupfs
cgroupRoot: /$(node_cgroup)
failCgroupV1: false
failSwapOn: false
protectKernelDefaults: false
makeIPTablesUtilChains: false
serializeImagePulls: false
resolvConf: /etc/resolv.conf
registerWithTaints:
- {key: $REAL_NODE_LABEL, value: $REAL_NODE_SEGMENT, effect: NoSchedule}
maxPods: 60
evictionHard: {memory.available: 100Mi, nodefs.available: 1%, nodefs.inodesFree: 1%, imagefs.available: 1%}
imageGCHighThresholdPercent: 99
imageGCLowThresholdPercent: 98
containerLogMaxSize: 1Mi
containerLogMaxFiles: 3
nodeStatusUpdateFrequency: 5s
EOF
}

setup_node_network() { # dir
  local dir="$1" hostif
  hostif="$(node_host_if)"
  touch "$dir/netns"
  unshare --net="$dir/netns" true || return 1
  ip link add "$hostif" type veth peer name uplink netns "$dir/netns" || return 1
  ip addr add "$(node_ip)/30" dev "$hostif" && ip link set "$hostif" up || return 1
  nsenter --net="$dir/netns" sh -c "
    ip link set lo up && ip addr add $(node_netns_ip)/30 dev uplink && ip link set uplink up &&
    echo 1 >/proc/sys/net/ipv4/ip_forward" || return 1
  ip route add "$(node_pod_subnet)" via "$(node_netns_ip)" dev "$hostif"
}

setup_node_cgroups() {
  local cg h
  cg="$(node_cgroup)"
  for h in /sys/fs/cgroup/*/; do
    [[ -d "$h" && "$h" != */unified/ ]] || continue
    mkdir -p "$h$cg" || return 1
    if [[ -f "$h/cpuset.cpus" ]]; then # a new cpuset has none until given its parent's
      cat "$h/cpuset.cpus" >"$h$cg/cpuset.cpus" && cat "$h/cpuset.mems" >"$h$cg/cpuset.mems" || return 1
    fi
  done
}

# ----------------------------------------------------------------- down ----

# stop_real_node stops the node and removes all it made on the host: its
# processes (by pid, then the containers by cgroup, then the shims by mount
# namespace), its cgroups (deepest first), its veth, route and network
# namespace. Its mounts go with its mount namespace.
stop_real_node() {
  local dir i
  dir="$(NODE_DIR)"
  [[ -d "$dir" ]] || return 0
  rm -f "$dir/up"
  stop_one kubelet
  for ((i = 0; i < 50; i++)); do kill_node_containers || break; sleep 0.1; done
  stop_one containerd
  for ((i = 0; i < 50; i++)); do kill_node_shims || break; sleep 0.1; done
  for ((i = 0; i < 50; i++)); do remove_node_cgroups && break; sleep 0.1; done
  remove_node_cgroups || log "warning: could not remove every cgroup under $(node_cgroup)"
  ip link del "$(node_host_if)" 2>/dev/null || true
  if mountpoint -q "$dir/netns" 2>/dev/null; then umount "$dir/netns" || log "warning: could not unmount $dir/netns"; fi
  rm -rf "$dir"
}

kill_node_containers() { # kills every process in the node's cgroups; false when there was none
  local f pid found=1
  while IFS= read -r f; do
    while IFS= read -r pid; do
      [[ -n "$pid" ]] || continue
      kill -KILL "$pid" 2>/dev/null && found=0
    done <"$f"
  done < <(find /sys/fs/cgroup/memory/"$(node_cgroup)" /sys/fs/cgroup/pids/"$(node_cgroup)" -name cgroup.procs 2>/dev/null)
  return "$found"
}

kill_node_shims() { # kills what is left in the node's mount namespace (the shims); false when nothing was
  local ns nodebin p exe found=1
  ns="$(cat "$(NODE_DIR)/mntns" 2>/dev/null)" && nodebin="$(cat "$(NODE_DIR)/bin-dir" 2>/dev/null)" || return 1
  [[ -n "$ns" && -n "$nodebin" ]] || return 1
  # One find over /proc (a readlink per process takes seconds on a busy
  # machine); -lname is a glob, so the brackets of mnt:[inode] are escaped.
  ns="${ns//[/\\[}" ns="${ns//]/\\]}"
  while IFS= read -r p; do
    p="${p%/ns/mnt}"
    exe="$(readlink "$p/exe" 2>/dev/null || true)"
    # Only the node's own binaries (the shims): pid or namespace reuse
    # cannot make this kill anything else.
    [[ "${exe% (deleted)}" == "$nodebin"/* ]] || continue
    kill -KILL "${p#/proc/}" 2>/dev/null && found=0
  done < <(find /proc/[0-9]*/ns/mnt -maxdepth 0 -lname "$ns" 2>/dev/null)
  return "$found"
}

remove_node_cgroups() { # false while some cgroup is left
  local d left=0
  for d in /sys/fs/cgroup/*/"$(node_cgroup)"; do
    [[ -d "$d" ]] || continue
    find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null
    [[ -d "$d" ]] && left=1
  done
  return "$left"
}

real_node_env() {
  [[ -f "$(NODE_DIR)/up" ]] || return 0
  printf 'export IRIS_REAL_NODE=%q\n' "$REAL_NODE_NAME"
  printf 'export IRIS_REAL_NODE_PLACEMENT_TAG=%q\n' "$REAL_NODE_SEGMENT"
  printf 'export IRIS_REAL_NODE_LOG_DIR=%q\n' "$(NODE_DIR)/log"
  printf 'export IRIS_REAL_NODE_POD_CIDR=%q\n' "$(node_pod_subnet)"
}
