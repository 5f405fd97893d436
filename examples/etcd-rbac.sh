#!/bin/sh
# etcd-rbac.sh: etcd users and roles for a freezefs consistency group.
#
#   etcd-rbac.sh GROUP USER
#       USER may read and write every key of GROUP (/freezefs/group/GROUP/):
#       enough for its agents and its freezing commands, and nothing else.
#   etcd-rbac.sh --host NODE GROUP USER
#       USER serves only node NODE: it reads the group and writes only its
#       own registration and reports (member/NODE, report/NODE, held/NODE).
#       A host confined this way can neither freeze the group nor forge
#       another member's word. Give each host a user of its own.
#   etcd-rbac.sh --freezer GROUP USER
#       USER runs freezefs-group freeze, thaw and status for GROUP: it reads
#       the group and writes only the epoch and why it ended (epoch, ended).
#
# Whoever can write a group's epoch can freeze its hosts. Run with
# etcdctl's own settings for an administrator, for example
#   ETCDCTL_ENDPOINTS=https://etcd1:2379 ETCDCTL_USER=root:... \
#   USER_PASSWORD=... ./etcd-rbac.sh --host db-1 orders orders-db-1
# and then give that host's agent --user orders-db-1 --password-file FILE.
set -eu
usage="usage: etcd-rbac.sh [--host NODE | --freezer] GROUP USER (USER_PASSWORD in the environment)"
mode=group node=
case "${1:-}" in
  --host) mode=host node=${2:?$usage}; shift 2 ;;
  --freezer) mode=freezer; shift ;;
esac
group=${1:?$usage}
user=${2:?$usage}
: "${USER_PASSWORD:?set USER_PASSWORD to the new user's password}"
prefix=/freezefs/group/$group/

case "$mode" in
  group)
    role=freezefs-group-$group
    etcdctl role add "$role"
    etcdctl role grant-permission "$role" --prefix=true readwrite "$prefix"
    ;;
  host)
    role=freezefs-group-$group-host-$node
    etcdctl role add "$role"
    etcdctl role grant-permission "$role" --prefix=true read "$prefix"
    for key in member report held; do
      etcdctl role grant-permission "$role" readwrite "$prefix$key/$node"
    done
    ;;
  freezer)
    role=freezefs-group-$group-freezer
    etcdctl role add "$role"
    etcdctl role grant-permission "$role" --prefix=true read "$prefix"
    for key in epoch ended; do
      etcdctl role grant-permission "$role" readwrite "$prefix$key"
    done
    ;;
esac
etcdctl user add "$user:$USER_PASSWORD" --interactive=false
etcdctl user grant-role "$user" "$role"
