set -ex
test "$(cat /usr/local/bin/app)" = compiled
test -x /from-index
test "$(cat /tested)" = tested
test ! -e /out
echo ok
