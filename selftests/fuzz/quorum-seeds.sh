#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# Seeds of fuzz_quorum in DIR: table lines (first byte even) and read votes
# (first byte odd; see fuzz_quorum.c for the layout).
set -e
d=$1
mkdir -p "$d"
printf 'b2 3 a b c' >"$d/seed-table"
printf 'b2 3 a b c 3 rewrite-corrupted read-pattern quorum' >"$d/seed-table-rewrite"
printf 'b2 2 a b 1 blkverify' >"$d/seed-table-blkverify"
printf 'b1 2 a b 2 read-pattern fifo' >"$d/seed-table-fifo"
printf 'b2 3 a b c 1 bogus' >"$d/seed-table-bad"
# Votes: 3 version places, n, threshold, blkverify, then per child a
# version (4: failed) and its segment cuts.
printf 'a\005\020\040\002\002\000\000\077\000\037\037\001\077' >"$d/seed-vote-3"
printf 'a\005\020\040\004\002\000\000\077\001\077\002\077\004\003\077' >"$d/seed-vote-5"
printf 'a\005\020\077\000\000\001\000\077\001\077' >"$d/seed-vote-blkverify"
