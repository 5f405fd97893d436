#!/bin/sh
# etcd-rbac.sh GROUP USER: confines the etcd user USER to the keys of the
# freezefs consistency group GROUP (/freezefs/group/GROUP/), as the agents
# and freezing commands of that group need, and nothing else. Whoever can
# write a group's keys can freeze its hosts: give each group its own user.
#
# Run with etcdctl's own settings for an administrator, for example
#   ETCDCTL_ENDPOINTS=https://etcd1:2379 ETCDCTL_USER=root:... \
#   USER_PASSWORD=... ./etcd-rbac.sh orders-db orders-agent
# and then give the agents --user orders-agent --password-file FILE.
set -eu
group=${1:?usage: etcd-rbac.sh GROUP USER (USER_PASSWORD in the environment)}
user=${2:?usage: etcd-rbac.sh GROUP USER (USER_PASSWORD in the environment)}
: "${USER_PASSWORD:?set USER_PASSWORD to the new user's password}"
role=freezefs-group-$group

etcdctl role add "$role"
etcdctl role grant-permission "$role" --prefix=true readwrite "/freezefs/group/$group/"
etcdctl user add "$user:$USER_PASSWORD" --interactive=false
etcdctl user grant-role "$user" "$role"
