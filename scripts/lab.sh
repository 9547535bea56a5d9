#!/usr/bin/env bash
# Open JupyterLab on notebooks/. With a network namespace, JupyterLab runs inside it (so
# the kernel reaches the guests) and socat forwards 127.0.0.1:PORT on the host into it.
set -euo pipefail
cd "$(dirname "$0")/.."
NETNS=${1:-}
PORT=${2:-8888}
LAB=(.venv/bin/jupyter lab --no-browser --ip=127.0.0.1 --port="$PORT"
     --ServerApp.root_dir=notebooks --allow-root)

if [ -z "$NETNS" ]; then
    exec "${LAB[@]}"
fi
socat "TCP-LISTEN:$PORT,bind=127.0.0.1,fork,reuseaddr" \
      "EXEC:ip netns exec $NETNS socat STDIO TCP\:127.0.0.1\:$PORT" &
forward=$!
trap 'kill $forward 2>/dev/null' EXIT
echo "lab: JupyterLab runs in netns $NETNS; open the URL it prints (forwarded to 127.0.0.1:$PORT)"
ip netns exec "$NETNS" "${LAB[@]}"
