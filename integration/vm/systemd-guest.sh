#!/bin/sh
# Runs inside the systemd VM (systemd-tests.sh): the lbsuite package on a stock
# Debian bookworm under systemd. Prints `TEST <name> PASS|FAIL [detail]` per check
# and `VERDICT PASS|FAIL`; systemd-guest.service powers off afterwards.
#
# Two nodes as network namespaces (lb1, lb2), with a client and two web servers
# (srv1, srv2) on two bridges in namespace `sw`, the example's two-arm layout. Each
# node runs the packaged units as instances: vrrpd@lbN and lbd@lbN are the packaged
# vrrpd.service and lbd.service (copied as templates) with a drop-in that adds only
# what two nodes on one machine need: NetworkNamespacePath=/run/netns/lbN, the node's
# own directory /etc/lbsuite/lbN bound over /etc/lbsuite (so /etc/lbsuite/cluster.toml
# is its copy of the example, with its own control sockets), --node (both nodes share
# the machine's host name) and their own run-time and state directories. The packaged
# ExecReload runs as shipped.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
failed=0
pass() { echo "TEST $1 PASS${2:+ $2}"; }
fail() { echo "TEST $1 FAIL${2:+ $2}"; failed=1; }
check() { # check NAME DETAIL COMMAND...: PASS when COMMAND succeeds
    name=$1; detail=$2; shift 2
    if "$@" >/tmp/check.out 2>&1; then pass "$name" "$detail"; else
        fail "$name" "$detail"; sed 's/^/  | /' /tmp/check.out | tail -n 20
    fi
}
# Polls COMMAND every 0.5 s for up to SECS seconds (emulated: generous).
wait_for() {
    secs=$1; shift
    i=0
    while [ "$i" -lt $((secs * 2)) ]; do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.5; i=$((i + 1))
    done
    return 1
}
phase() { echo "GUEST $(cut -d' ' -f1 /proc/uptime) s: $*"; }
finish() {
    if [ "$failed" = 0 ]; then echo "VERDICT PASS"; else echo "VERDICT FAIL"; fi
    exit 0
}

echo "GUEST up: kernel $(uname -r), systemd $(systemctl --version | head -n 1 | cut -d' ' -f2), $(cut -d' ' -f1 /proc/uptime) s since boot"
check boot_multi_user "$(systemctl is-system-running)" \
    sh -c 'systemctl is-active --quiet multi-user.target && [ "$(systemctl --failed --no-legend | grep -v lbsuite-vm-test | wc -l)" = 0 ]'

# --- what is on the system before the package: compared with after the purge
snapshot() {
    find / -xdev \( -path /proc -o -path /sys -o -path /dev -o -path /run -o -path /tmp \
        -o -path /var/log -o -path /var/lib/dpkg -o -path /var/cache -o -path /root \
        -o -path /var/lib/systemd/deb-systemd-helper-masked \) -prune -o -print | sort
}
snapshot > /root/before.txt
phase "file list taken"

# --- install
if dpkg -i /root/lbsuite.deb >/tmp/dpkg.out 2>&1 && dpkg -s lbsuite 2>/dev/null | grep -q '^Status: install ok installed'; then
    pass dpkg_install "$(dpkg-query -W -f='${Version}' lbsuite)"
else
    fail dpkg_install; sed 's/^/  | /' /tmp/dpkg.out; finish
fi
check package_files "programs, units, conffile, man pages, completions, docs" sh -c '
    for f in /usr/sbin/vrrpd /usr/sbin/lbd /usr/sbin/vrrpctl /etc/lbsuite/cluster.toml \
        /usr/share/man/man8/vrrpd.8.gz /usr/share/man/man8/lbd.8.gz /usr/share/man/man8/vrrpctl.8.gz \
        /usr/share/man/man5/cluster.toml.5.gz /usr/share/bash-completion/completions/vrrpctl \
        /usr/share/doc/lbsuite/README.md; do [ -e "$f" ] || { echo "missing $f"; exit 1; }; done
    systemctl cat vrrpd.service lbd.service >/dev/null
    dpkg-query --showformat="\${Conffiles}\n" -W lbsuite | grep -q " /etc/lbsuite/cluster.toml "
    [ "$(systemctl is-enabled vrrpd.service)" = disabled ] && [ "$(systemctl is-enabled lbd.service)" = disabled ]'

phase installed
# --- the lab: sw holds the two segments as bridges; lb1, lb2, client, srv1, srv2
for ns in sw lb1 lb2 client srv1 srv2; do ip netns add "$ns"; ip -n "$ns" link set lo up; done
ip -n sw link add br0 type bridge; ip -n sw link add br1 type bridge
ip -n sw link set br0 up; ip -n sw link set br1 up
# cable NS IFNAME BRIDGE ADDRESS...
cable() {
    ns=$1; ifname=$2; br=$3; shift 3
    ip link add "$ns-$ifname" type veth peer name "$ifname" netns "$ns"
    ip link set "$ns-$ifname" netns sw
    ip -n sw link set "$ns-$ifname" master "$br" up
    for a in "$@"; do ip -n "$ns" addr add "$a" dev "$ifname"; done
    ip -n "$ns" link set "$ifname" up
}
cable lb1 eth0 br0 198.18.0.11/24; cable lb1 eth1 br1 198.18.1.11/24
cable lb2 eth0 br0 198.18.0.12/24; cable lb2 eth1 br1 198.18.1.12/24
cable client eth0 br0 198.18.0.10/24
cable srv1 eth0 br1 198.18.1.21/24; cable srv2 eth0 br1 198.18.1.22/24
for s in srv1 srv2; do
    mkdir -p "/srv/$s/cgi-bin"
    echo "$s" > "/srv/$s/index.html"
    # busybox httpd listens on an IPv6 socket: an IPv4 client's REMOTE_ADDR reads
    # "[::ffff:198.18.1.100]"; the answer gives the plain address.
    cat > "/srv/$s/cgi-bin/who" <<EOF
#!/bin/sh
a=\${REMOTE_ADDR#[}; a=\${a%]}; a=\${a#::ffff:}
printf 'Content-Type: text/plain\\r\\n\\r\\n%s %s\\n' $s "\$a"
EOF
    chmod 755 "/srv/$s/cgi-bin/who"
    ip netns exec "$s" busybox httpd -p 80 -h "/srv/$s"
done
# The nodes route between the segments. A stock Debian has forwarding off, and IPVS
# NAT needs it: the client's packets are delivered locally to the VIP and sent on by
# IPVS, but the servers' answers, once conntrack has undone the SNAT, are forwarded to
# the client (with forwarding off they are dropped after the handshake's SYN-ACK).
for n in lb1 lb2; do
    ip netns exec "$n" sysctl -qw net.ipv4.ip_forward=1
    if [ "$(ip netns exec "$n" sysctl -n net.ipv4.ip_forward)" != 1 ]; then
        fail lab_setup "net.ipv4.ip_forward is not 1 on $n"; finish
    fi
done

# --- each node's config and the instance units
for n in lb1 lb2; do
    mkdir -p "/etc/lbsuite/$n"
    sed -e "s|/run/lbsuite/vrrpd.sock|/run/lbsuite/$n/vrrpd.sock|" \
        -e "s|/run/lbsuite/lbd.sock|/run/lbsuite/$n/lbd.sock|" \
        -e 's|^prepare_budget_ms = .*|prepare_budget_ms = 5000|' \
        /etc/lbsuite/cluster.toml > "/etc/lbsuite/$n/cluster.toml"
done
for u in vrrpd lbd; do
    # A copy: systemd takes no link from a template name to a plain unit.
    cp "/usr/lib/systemd/system/$u.service" "/etc/systemd/system/$u@.service"
    mkdir -p "/etc/systemd/system/$u@.service.d"
    # The packaged ExecStart and ExecReload read /etc/lbsuite/cluster.toml: in the
    # unit's mount namespace that is /etc/lbsuite/%i/cluster.toml (a directory bind,
    # so that a file replaced by rename is seen too).
    cat > "/etc/systemd/system/$u@.service.d/node.conf" <<EOF
[Unit]
Description=lbsuite $u of node %i
$( [ "$u" = vrrpd ] && echo "After=lbd@%i.service" )
[Service]
NetworkNamespacePath=/run/netns/%i
BindReadOnlyPaths=/etc/lbsuite/%i:/etc/lbsuite
ExecStart=
ExecStart=/usr/sbin/$u --config /etc/lbsuite/cluster.toml --node %i
RuntimeDirectory=lbsuite/%i
StateDirectory=
StateDirectory=lbsuite/%i
EOF
done
systemctl daemon-reload
phase "lab and instance units ready"
# The command line of UNIT's ExecReload.
exec_reload() { systemctl show -p ExecReload "$1" | sed -n 's/.*argv\[\]=\([^;]*[^ ;]\) *;.*/\1/p'; }
# The instances run the packaged units' ExecReload: no drop-in replaces it.
packaged_exec_reload() {
    for u in lbd vrrpd; do
        shipped="$(exec_reload "$u.service")"
        echo "$u: shipped [$shipped], lb1 [$(exec_reload "$u@lb1.service")]"
        [ "$shipped" = "/usr/sbin/vrrpctl --config /etc/lbsuite/cluster.toml reload --only $u" ] \
            && [ "$(exec_reload "$u@lb1.service")" = "$shipped" ] \
            && [ "$(exec_reload "$u@lb2.service")" = "$shipped" ] \
            && ! grep -q ExecReload "/etc/systemd/system/$u@.service.d/node.conf" || return 1
    done
}
check units_packaged_exec_reload "$(exec_reload lbd@lb1.service); $(exec_reload vrrpd@lb1.service)" packaged_exec_reload

# --- start: lb1 first (under emulation lb2 started together may be MASTER a moment)
started=1
for n in lb1 lb2; do
    for u in lbd vrrpd; do
        timeout 120 systemctl start "$u@$n" || started=0
    done
done
units_ok() {
    for n in lb1 lb2; do for u in lbd vrrpd; do
        [ "$(systemctl show -p ActiveState --value "$u@$n")" = active ] || return 1
        [ "$(systemctl show -p SubState --value "$u@$n")" = running ] || return 1
        [ -n "$(systemctl show -p StatusText --value "$u@$n")" ] || return 1
    done; done
}
if [ "$started" = 1 ] && units_ok; then
    pass units_active_ready "$(for n in lb1 lb2; do for u in lbd vrrpd; do printf '%s@%s: %s; ' "$u" "$n" "$(systemctl show -p StatusText --value "$u@$n")"; done; done)"
else
    fail units_active_ready
    for n in lb1 lb2; do for u in lbd vrrpd; do
        systemctl status --no-pager -n 15 "$u@$n" 2>&1 | sed 's/^/  | /'
    done; done
    finish
fi

vip_on() { ip -n "$1" -4 addr show dev eth0 | grep -q ' 198\.18\.0\.100/'; }
check lb1_master_holds_vips "" wait_for 30 vip_on lb1
check ipvs_services "lb1 and lb2" sh -c '
    for n in lb1 lb2; do
        ip netns exec $n ipvsadm -Ln > /tmp/ipvs.$n
        grep -q "^TCP  198.18.0.100:80 rr" /tmp/ipvs.$n && grep -q "198.18.1.21:80" /tmp/ipvs.$n \
            && grep -q "198.18.1.22:80" /tmp/ipvs.$n || { cat /tmp/ipvs.$n; exit 1; }
    done'

# GET /cgi-bin/who through the VIP COUNT times; prints the answers ("srvN SOURCE").
through_vip() {
    i=0
    while [ "$i" -lt "$1" ]; do
        ip netns exec client timeout 30 busybox wget -q -O - http://198.18.0.100/cgi-bin/who || echo "no answer"
        i=$((i + 1))
    done
}
# After a failed traffic check: what the node NODE's kernel did with one request
# (direct requests from NODE to the servers, sysctls, nft, IPVS and conntrack
# tables, and captures on the client's and the servers' segments).
diagnose() {
    node=$1
    {
        echo "--- diagnostics on $node"
        for a in 198.18.1.21 198.18.1.22; do
            printf 'direct %s: ' "$a"
            ip netns exec "$node" timeout 10 busybox wget -q -O - "http://$a/cgi-bin/who" 2>&1 || echo "no answer"
        done
        ip netns exec "$node" sysctl net.ipv4.ip_forward net.ipv4.vs.conntrack \
            net.ipv4.conf.all.rp_filter net.ipv4.conf.eth0.rp_filter net.ipv4.conf.eth1.rp_filter 2>&1
        ip -n "$node" -br addr
        ip -n "$node" route
        for c in "$node:eth0" "$node:eth1" srv1:eth0 client:eth0; do
            ip netns exec "${c%:*}" timeout 12 tcpdump -lnni "${c#*:}" -c 40 \
                'arp or (tcp port 80 and (host 198.18.0.10 or host 198.18.1.100))' \
                > "/tmp/td.${c%:*}.${c#*:}" 2>&1 &
        done
        sleep 2
        ip netns exec client timeout 8 busybox wget -q -O - http://198.18.0.100/cgi-bin/who 2>&1 || echo "no answer"
        sleep 1
        ip netns exec "$node" ipvsadm -Lnc
        ip netns exec "$node" conntrack -L 2>&1 | grep -v 'dport=8848\|sport=8848'
        ip netns exec "$node" nft list ruleset
        wait
        for c in "$node:eth0" "$node:eth1" srv1:eth0 client:eth0; do
            echo "--- tcpdump $c"; cat "/tmp/td.${c%:*}.${c#*:}"
        done
        ip -n srv1 neigh; ip -n client neigh
        journalctl -u "lbd@$node" -o cat --no-pager | tail -n 20
    } 2>&1 | sed 's/^/  | /'
}
# Servers up for both nodes' health checks (rise 2, interval 1 s).
servers_up() { ip netns exec "$1" ipvsadm -Ln | grep -E '198\.18\.1\.2[12]:80 +Masq +1 ' | wc -l | grep -qx 2; }
wait_for 60 servers_up lb1 || true
through_vip 4 > /tmp/answers
if [ "$(grep -c '^srv1 198\.18\.1\.100$' /tmp/answers)" = 2 ] && [ "$(grep -c '^srv2 198\.18\.1\.100$' /tmp/answers)" = 2 ]; then
    pass traffic_snat "$(sort /tmp/answers | uniq -c | tr -s ' \n' ' ')"
else
    fail traffic_snat; sed 's/^/  | /' /tmp/answers; ip netns exec lb1 ipvsadm -Ln | sed 's/^/  | /'
    diagnose lb1
fi

phase "traffic checked"
# --- reloads through the packaged ExecReload (vrrpctl checks the file, asks the one
# daemon and waits for its verdict; its output goes to the unit's journal): a refused
# file fails `systemctl reload` visibly and changes nothing, a good one is applied.
ip netns exec lb1 ipvsadm -Sn > /tmp/ipvs.before
cp /etc/lbsuite/lb1/cluster.toml /tmp/good.toml
# in_journal DAEMON TEXT: TEXT is in the journal of DAEMON@lb1 (waits up to 10 s: the
# journal may lag the reload); prints the line.
in_journal() {
    wait_for 10 sh -c "journalctl -u '$1@lb1' -o cat --no-pager | grep -qF -- '$2'" \
        && journalctl -u "$1@lb1" -o cat --no-pager | grep -m1 -F -- "$2"
}
# refused_reload DAEMON NAME TEXT: `systemctl reload DAEMON@lb1` of the file in place
# must fail, with IPVS and lb1's VIP unchanged, the daemon still active, and TEXT
# (vrrpctl's verdict) in the unit's journal.
refused_reload() {
    if systemctl reload "$1@lb1" >/tmp/reload.out 2>&1; then
        fail "$2" "systemctl reload succeeded"; return
    fi
    ip netns exec lb1 ipvsadm -Sn > /tmp/ipvs.after
    if ! cmp -s /tmp/ipvs.before /tmp/ipvs.after || ! systemctl is-active --quiet "$1@lb1" || ! vip_on lb1; then
        fail "$2" "IPVS or the VIP changed, or $1 down"; diff /tmp/ipvs.before /tmp/ipvs.after | sed 's/^/  | /'
    elif ! in_journal "$1" "$3" > /tmp/verdict; then
        fail "$2" "no \"$3\" in the journal of $1@lb1"
        journalctl -u "$1@lb1" -o cat --no-pager | tail -n 15 | sed 's/^/  | /'
    else
        pass "$2" "$(tail -n 1 /tmp/reload.out); $(cat /tmp/verdict)"
    fi
}
echo 'this is = = not toml' >> /etc/lbsuite/lb1/cluster.toml
refused_reload lbd reload_refused_syntax "refused: nothing reloaded"
refused_reload vrrpd vrrpd_reload_refused_syntax "refused: nothing reloaded"
# A valid file lbd itself refuses: it drops every running service.
awk '/^\[\[service\]\]/ {skip=1} /^\[\[check\]\]/ {skip=0} !skip' /tmp/good.toml > /etc/lbsuite/lb1/cluster.toml
refused_reload lbd reload_refused_by_lbd "lbd: REFUSED, running configuration unchanged"
# srv2's weight in lb1's IPVS is $1.
srv2_weight() { ip netns exec lb1 ipvsadm -Ln | grep -qE "198\.18\.1\.22:80 +Masq +$1 "; }
# good_reload DAEMON [WEIGHT]: `systemctl reload DAEMON@lb1` succeeds, vrrpctl's
# "DAEMON: applied" is in the unit's journal (the second time: the count goes up),
# the daemon is active, lb1 holds the VIP and srv2 has WEIGHT in IPVS.
good_reload() {
    applied=$(journalctl -u "$1@lb1" -o cat --no-pager | grep -cF "$1: applied")
    systemctl reload "$1@lb1" || return 1
    wait_for 10 sh -c "[ \$(journalctl -u '$1@lb1' -o cat --no-pager | grep -cF '$1: applied') -gt $applied ]" || return 1
    journalctl -u "$1@lb1" -o cat --no-pager | grep -F "$1: applied" | tail -n 1
    systemctl is-active --quiet "$1@lb1" && vip_on lb1 && { [ -z "$2" ] || wait_for 10 srv2_weight "$2"; }
}
# A good file with a change (srv2's weight 3), then the original file again.
awk '/^name = "srv2"/ {s=1} s && /^weight = 1$/ {$0 = "weight = 3"; s=0} 1' /tmp/good.toml > /etc/lbsuite/lb1/cluster.toml
check reload_good_file "srv2's weight 3 in lb1's IPVS" good_reload lbd 3
cp /tmp/good.toml /etc/lbsuite/lb1/cluster.toml
check reload_good_file_back "srv2's weight 1 again" good_reload lbd 1
check vrrpd_reload_good_file "lb1 still MASTER" good_reload vrrpd

# --- the journal: -p warning selects the warnings and errors, not the info lines
journalctl -u lbd@lb1 -o cat --no-pager > /tmp/all.log
journalctl -u lbd@lb1 -p warning -o cat --no-pager > /tmp/warn.log
check journal_priorities "$(wc -l < /tmp/warn.log) of $(wc -l < /tmp/all.log) lines" sh -c '
    grep -q "reload refused" /tmp/warn.log && grep -q fingerprint /tmp/all.log && ! grep -q fingerprint /tmp/warn.log'

phase "reloads and journal checked"
# --- failover: vrrpd stopped on the master
systemctl stop vrrpd@lb1
if wait_for 30 vip_on lb2 && ! vip_on lb1; then
    wait_for 60 servers_up lb2 || true
    through_vip 4 > /tmp/answers
    if [ "$(grep -c '^srv[12] 198\.18\.1\.100$' /tmp/answers)" = 4 ] && grep -q '^srv1 ' /tmp/answers && grep -q '^srv2 ' /tmp/answers; then
        pass failover_traffic "$(sort /tmp/answers | uniq -c | tr -s ' \n' ' ')"
    else
        fail failover_traffic; sed 's/^/  | /' /tmp/answers
        diagnose lb2
    fi
else
    fail failover_traffic "VIP not moved to lb2"
fi

phase "failover checked"

# --- active-active (docs/active-active.md): the packaged lbd announces its VIP
# through FRR (vtysh) in node aa1 and BIRD 2 (an include file and birdc) in node
# aa2, each a namespace of its own, under the packaged unit's hardening: first
# without the drop-in the documentation gives (the routing daemon is out of reach),
# then with it. The nodes' lbd use the same instance template as lb1/lb2 (their own
# /etc/lbsuite/<node>, run-time and state directories).
aa_example=/usr/share/doc/lbsuite/examples/active_active.toml
aa_file() { # NODE DAEMON: the shipped active-active example, nodes aa1..aa3
    if [ "$2" = frr ]; then
        sed -e 's/"lb\([123]\)"/"aa\1"/' "$aa_example"
    else
        sed -e 's/"lb\([123]\)"/"aa\1"/' -e 's/^daemon = .*/daemon = "bird"/' \
            -e 's|^asn = .*|bird_socket = "/run/bird/{node}.ctl"|' \
            -e 's|^pathspace = .*|bird_include = "/etc/bird/lbsuite/{node}.conf"|' "$aa_example"
    fi
    # Two nodes on one machine: each its own control socket.
    printf '\n[control]\nlbd_socket = "/run/lbsuite/%s/lbd.sock"\n' "$1"
}
aa_node() { # NODE: the namespace with the node's two addresses
    ip netns add "$1"
    ip -n "$1" link set lo up
    h=$(echo "$1" | tr -dc 0-9)
    for i in 0 1; do
        ip -n "$1" link add "eth$i" type dummy
        ip -n "$1" addr add "198.18.$i.1$h/24" dev "eth$i"
        ip -n "$1" link set "eth$i" up
    done
}
aa_unit_state() { echo "$(systemctl show -p ActiveState --value "lbd@$1")/$(systemctl show -p SubState --value "lbd@$1")"; }
frr_networks() { ip netns exec aa1 vtysh -N aa1 -c 'show running-config bgpd' 2>/dev/null | grep -c 'network 198\.18\.5\.100/32'; }
bird_routes() { birdc -s /run/bird/aa2.ctl show route protocol lbsuite_vips 2>/dev/null | grep -c '198\.18\.5\.100/32'; }
aa_journal() { journalctl -u "lbd@$1" -o cat --no-pager | tail -n 8 | sed 's/^/  | /'; }
# wait_for runs programs: these are the announced counts as commands.
frr_has() { [ "$(frr_networks)" = "$1" ]; }
bird_has() { [ "$(bird_routes)" = "$1" ]; }
aa_running() { [ "$(aa_unit_state "$1")" = active/running ]; }
[ -e /var/tmp/frr ] && frr_tmp_before=1 || frr_tmp_before=0
if [ -f "$aa_example" ]; then pass aa_example_shipped "$aa_example"; else fail aa_example_shipped "$aa_example missing"; fi

# FRR in aa1: zebra and bgpd of pathspace aa1, `router bgp 65010`, no neighbours.
aa_node aa1
mkdir -p /etc/lbsuite/aa1 /var/run/frr/aa1
chown frr:frr /var/run/frr/aa1
aa_file aa1 frr > /etc/lbsuite/aa1/cluster.toml
printf 'hostname aa1\nrouter bgp 65010\n bgp router-id 198.18.0.11\n no bgp network import-check\nexit\n' > /tmp/aa1-frr.conf
chmod 644 /tmp/aa1-frr.conf
for d in zebra bgpd; do ip netns exec aa1 "/usr/lib/frr/$d" -N aa1 -f /tmp/aa1-frr.conf -d; done
wait_for 30 test -S /var/run/frr/aa1/bgpd.vty || true
# BIRD 2 in aa2, as docs/active-active.md sets it up: lbd's include file in a
# directory lbd (root) owns and BIRD (group bird) reads; the control socket
# /run/bird/aa2.ctl.
aa_node aa2
mkdir -p /etc/lbsuite/aa2 /run/bird
chown bird:bird /run/bird
install -d -o root -g bird -m 0750 /etc/bird/lbsuite
aa_file aa2 bird > /etc/lbsuite/aa2/cluster.toml
printf 'protocol static lbsuite_vips { ipv4; }\n' > /etc/bird/lbsuite/aa2.conf
printf 'router id 198.18.0.12;\nprotocol device {}\ninclude "/etc/bird/lbsuite/aa2.conf";\n' > /etc/bird/aa2.conf
chown bird:bird /etc/bird/aa2.conf
ip netns exec aa2 bird -u bird -g bird -s /run/bird/aa2.ctl -c /etc/bird/aa2.conf
wait_for 30 test -S /run/bird/aa2.ctl || true

# Without the drop-in: lbd runs (its dataplane applied) but cannot reach the
# routing daemon: nothing is announced and the journal says why.
systemctl start lbd@aa1 lbd@aa2
wait_for 60 aa_running aa1 || true
wait_for 60 aa_running aa2 || true
sleep 3
check aa_frr_without_drop_in "lbd@aa1 $(aa_unit_state aa1), FRR networks $(frr_networks)" sh -c '
    [ "$(systemctl show -p SubState --value lbd@aa1)" = running ] &&
    [ "$(ip netns exec aa1 vtysh -N aa1 -c "show running-config bgpd" | grep -c "network 198\.18\.5\.100/32")" = 0 ] &&
    journalctl -u lbd@aa1 -o cat --no-pager | grep vtysh'
check aa_bird_without_drop_in "lbd@aa2 $(aa_unit_state aa2), BIRD routes $(bird_routes)" sh -c '
    [ "$(systemctl show -p SubState --value lbd@aa2)" = running ] &&
    [ "$(birdc -s /run/bird/aa2.ctl show route protocol lbsuite_vips | grep -c "198\.18\.5\.100/32")" = 0 ] &&
    journalctl -u lbd@aa2 -o cat --no-pager | grep -E "birdc|/etc/bird/lbsuite/aa2"'
echo "  | lbd@aa1 without the drop-in: $(journalctl -u lbd@aa1 -o cat --no-pager | grep -m1 -i vtysh)"
echo "  | lbd@aa2 without the drop-in: $(journalctl -u lbd@aa2 -o cat --no-pager | grep -m1 -i -E 'birdc|/etc/bird')"
systemctl stop lbd@aa1 lbd@aa2
# The documented drop-ins.
mkdir -p /etc/systemd/system/lbd@aa1.service.d /etc/systemd/system/lbd@aa2.service.d
printf '[Service]\nSupplementaryGroups=frrvty\n' > /etc/systemd/system/lbd@aa1.service.d/frr.conf
printf '[Service]\nSupplementaryGroups=bird\nReadWritePaths=/etc/bird/lbsuite\n' > /etc/systemd/system/lbd@aa2.service.d/bird.conf
systemctl daemon-reload
systemctl start lbd@aa1 lbd@aa2
if wait_for 60 frr_has 1; then pass aa_frr_announces "lbd@aa1 $(aa_unit_state aa1): network 198.18.5.100/32 in FRR's bgpd"
else fail aa_frr_announces "lbd@aa1 $(aa_unit_state aa1), FRR networks $(frr_networks)"; aa_journal aa1; fi
if wait_for 60 bird_has 1; then pass aa_bird_announces "lbd@aa2 $(aa_unit_state aa2): 198.18.5.100/32 in BIRD's lbsuite_vips"
else fail aa_bird_announces "lbd@aa2 $(aa_unit_state aa2), BIRD routes $(bird_routes)"; aa_journal aa2; fi
check aa_ipvs_sloppy "net.ipv4.vs.sloppy_tcp: aa1 $(ip netns exec aa1 sysctl -n net.ipv4.vs.sloppy_tcp 2>&1), aa2 $(ip netns exec aa2 sysctl -n net.ipv4.vs.sloppy_tcp 2>&1)" sh -c '
    [ "$(ip netns exec aa1 sysctl -n net.ipv4.vs.sloppy_tcp)" = 1 ] && [ "$(ip netns exec aa2 sysctl -n net.ipv4.vs.sloppy_tcp)" = 1 ]'
# Stopped, each withdraws.
systemctl stop lbd@aa1 lbd@aa2
if wait_for 30 frr_has 0 && wait_for 30 bird_has 0; then pass aa_stop_withdraws "FRR networks 0, BIRD routes 0 after the stop"
else
    fail aa_stop_withdraws "FRR networks $(frr_networks), BIRD routes $(bird_routes) after the stop"
    aa_journal aa1; aa_journal aa2; sed 's/^/  | include: /' /etc/bird/lbsuite/aa2.conf
fi
# Leave nothing: the daemons, the namespaces, the files.
pkill -f 'frr/zebra -N aa1'; pkill -f 'frr/bgpd -N aa1'
birdc -s /run/bird/aa2.ctl down >/dev/null 2>&1
for n in aa1 aa2; do
    rm -rf "/var/lib/lbsuite/$n"
    ip netns del "$n"
done
[ "$frr_tmp_before" = 1 ] || rm -rf /var/tmp/frr
rm -rf /etc/systemd/system/lbd@aa1.service.d /etc/systemd/system/lbd@aa2.service.d \
    /etc/lbsuite/aa1 /etc/lbsuite/aa2 /etc/bird/lbsuite /etc/bird/aa2.conf
systemctl daemon-reload
phase "active-active checked"
# --- purge: stop, remove the test's own files, purge, compare with before
for n in lb1 lb2; do for u in vrrpd lbd; do systemctl stop "$u@$n"; done; done
rm -rf /etc/systemd/system/vrrpd@.service /etc/systemd/system/lbd@.service \
    /etc/systemd/system/vrrpd@.service.d /etc/systemd/system/lbd@.service.d /etc/lbsuite/lb1 /etc/lbsuite/lb2 /srv/srv1 /srv/srv2
systemctl daemon-reload
if dpkg --purge lbsuite >/tmp/dpkg.out 2>&1; then
    snapshot > /root/after.txt
    if cmp -s /root/before.txt /root/after.txt && ! dpkg -s lbsuite >/dev/null 2>&1 && [ ! -e /var/lib/lbsuite ]; then
        pass purge_leaves_nothing "$(wc -l < /root/after.txt) paths as before the install"
    else
        fail purge_leaves_nothing; diff /root/before.txt /root/after.txt | sed 's/^/  | /' | head -n 30
    fi
else
    fail purge_leaves_nothing "dpkg --purge failed"; sed 's/^/  | /' /tmp/dpkg.out
fi
finish
