set -ex
test "$(cat /copied)" = bound
grep -q run /runs-seen
test "$(cat /leaked-on-purpose)" = s3cret
test "$(cat /from-env)" = s3cret
test ! -e /cache/runs
echo ok
