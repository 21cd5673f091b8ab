#!/usr/bin/env bash
# `make data`: put the full-scale data where iai_core finds it, or say how to get it.
#
# Fashion-MNIST: Debian's package dataset-fashion-mnist (30 MB, the original IDX files, re-gzipped)
# installs it in /usr/share/datasets/fashion-mnist, the last folder iai_core.load_mnist looks in.
# This script installs it where apt-get exists and we are root or may sudo, then loads it once
# with iai_core (which checks the SHA-256 of each file's content). Exit status 1 when Fashion-MNIST
# is still missing, so targets that need it stop here with the instructions.
# MNIST and the statically binarized MNIST have no Debian package: the script says how to get them.
set -uo pipefail

PACKAGE=dataset-fashion-mnist
FOLDER=/usr/share/datasets/fashion-mnist
PYTHON=${PYTHON:-.venv/bin/python}
[ -x "$PYTHON" ] || PYTHON=python3

have_fashion() { [ -f "$FOLDER/train-images-idx3-ubyte.gz" ] || [ -f "$FOLDER/train-images-idx3-ubyte" ]; }

install_with_apt() {
    local sudo=()
    if [ "$(id -u)" -ne 0 ]; then
        if command -v sudo >/dev/null && { sudo -n true 2>/dev/null || [ -t 0 ]; }; then
            sudo=(sudo)
        else
            echo "get_data: not root and cannot sudo; skipping apt-get." >&2
            return 1
        fi
    fi
    if ! apt-cache show "$PACKAGE" >/dev/null 2>&1; then
        echo "get_data: $PACKAGE not in the package lists; running apt-get update" >&2
        "${sudo[@]}" apt-get update -q || return 1
    fi
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$PACKAGE"
}

if have_fashion; then
    echo "Fashion-MNIST: already installed in $FOLDER"
elif command -v apt-get >/dev/null; then
    echo "Fashion-MNIST: installing Debian's $PACKAGE"
    install_with_apt || true
fi

if have_fashion; then
    "$PYTHON" - <<'EOF' || exit 1
import iai_core
data = iai_core.load_mnist(name="fashion_mnist")   # the default folder search, with the content check
print(f"Fashion-MNIST: {len(data.x_train):,} training and {len(data.x_test):,} test images in {data.source}, "
      f"content verified")
EOF
    status=0
else
    cat >&2 <<EOF
Fashion-MNIST is not installed. Any one of these works:
  - on Debian or Ubuntu:  sudo apt-get install $PACKAGE      (files in $FOLDER)
  - on a machine with network access (e.g. Colab):
        python -c "import iai_core; iai_core.load_mnist(name='fashion_mnist', download=True)"
    (downloads into \$IAI_DATA/fashion_mnist, or ~/.cache/iai_core/fashion_mnist when IAI_DATA is unset)
  - by hand: copy train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte and
    t10k-labels-idx1-ubyte (gzipped or not) into \$IAI_DATA/fashion_mnist or ~/.cache/iai_core/fashion_mnist
EOF
    status=1
fi

cat <<'EOF'
MNIST and the statically binarized MNIST (Larochelle's .amat files) have no Debian package. On a
machine with network access:
    python -c "import iai_core; iai_core.load_mnist(download=True); iai_core.load_mnist(binarize='static', download=True)"
or copy the files into $IAI_DATA/mnist and $IAI_DATA/binarized_mnist (or ~/.cache/iai_core/...).
Every file is checked by the SHA-256 of its content.
EOF
exit $status
