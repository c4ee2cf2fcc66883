# Helpers shared by the scripts: sourced, not run.

# free_port prints a TCP port that nothing listens on, on 127.0.0.1 or
# elsewhere, and that this script has not been given before. It picks from
# 20000-32767, below Linux's ephemeral ports, so that a connection another
# program opens meanwhile does not take it.
_given_ports=" "
free_port() {
	local port
	for _ in $(seq 200); do
		port=$((20000 + RANDOM % 12768))
		case "$_given_ports" in *" $port "*) continue ;; esac
		if [ -z "$(ss -Htan "sport = :$port" 2>/dev/null)" ] && ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
			_given_ports+="$port "
			echo "$port"
			return 0
		fi
	done
	echo "no free port found in 20000-32767" >&2
	return 1
}

# require_free PORT WHAT: stop, saying which port is taken, if something
# listens on PORT.
require_free() {
	if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then
		echo "FAIL: port $1 ($2) is already in use by another program: stop it, or see the top of $0 to choose another" >&2
		exit 1
	fi
}
