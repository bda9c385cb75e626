set -ex
test "$(cat /one)" = "one
two"
test "$(cat /tabs)" = tabs
test "$(/script.sh hi)" = "hi from script"
test "$(cat /shebang)" = shebang
test "$(cat /a)" = first
test "$(cat /b)" = second
test "$(cat /inline/hello.txt)" = "hello world"
test "$(cat /inline/raw.txt)" = 'raw $WHO'
echo ok
