set -ex
test "$(cat /one/top.txt)" = top
test "$(stat -c %a /one/top.txt)" = 644
test "$(stat -c %u:%g /one/top.txt)" = 0:0
test "$(stat -c %a /bin/tool.sh)" = 755
test "$(/bin/tool.sh)" = tool
test "$(cat /renamed.txt)" = top
test "$(cat /tree/a.c)" = int
test "$(cat /tree/sub/deep.txt)" = deep
test ! -e /tree/src
test "$(ls /globbed | tr '\n' ' ')" = "a.c b.c "
test "$(stat -c %u:%g:%a /owned/a.h)" = 65534:65534:600
test "$(stat -c %u /owned-dir/deep.txt)" = 65534
test "$(cat /work/relative.txt)" = top
test -e /ctx/top.txt
test ! -e /ctx/secret.key
test ! -e /ctx/skipme/file
test "$(cat /ctx/skipme/keep)" = kept
test "$(cat /unpacked/inner/x.txt)" = "in archive"
test -f /notunpacked/bundle.tar.gz
echo ok
