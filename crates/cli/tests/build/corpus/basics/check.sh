set -ex
test "$(pwd)" = /srv/app/sub
test "$(cat greeting)" = "hello world
built-in-hello"
test "$(cat arg)" = fallback
test "$(cat exec)" = exec-form
test "$(cat /home/app/uid)" = 1000
test "$MESSAGE" = "hello world"
test "$NESTED" = dflt-set
test -z "$EMPTY"
test -z "${GREETING:-}"
echo ok
