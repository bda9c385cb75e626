set -ex
test "$(cat /joined)" = "one two three"
test "$(cat /winpath)" = 'C:\Windows'
echo ok
