"""Put MathJax 3 into _static/mathjax/ so the built book renders math with no network.

MathJax comes from the npm registry as a release tarball whose SHA-256 is checked; only the one
self-contained file the book loads (tex-svg-full.js) is kept. Run by `make setup`.
"""
import hashlib
import io
import pathlib
import tarfile
import urllib.request

VERSION = "3.2.2"
URL = f"https://registry.npmjs.org/mathjax/-/mathjax-{VERSION}.tgz"
SHA256 = "1b9c0a1c44df864e915690558e72adb9cc5203360daefd385084ced3b6c64c09"
TARGET = pathlib.Path(__file__).resolve().parent.parent / "_static" / "mathjax" / "tex-svg-full.js"

if __name__ == "__main__":
    if TARGET.exists():
        print(f"MathJax already in {TARGET.parent}")
        raise SystemExit(0)
    data = urllib.request.urlopen(URL, timeout=120).read()
    digest = hashlib.sha256(data).hexdigest()
    if digest != SHA256:
        raise SystemExit(f"{URL}: SHA-256 {digest} does not match {SHA256}")
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        js = tar.extractfile("package/es5/tex-svg-full.js").read()
    TARGET.parent.mkdir(parents=True, exist_ok=True)
    TARGET.write_bytes(js)
    print(f"MathJax {VERSION} -> {TARGET} ({len(js) // 1024} KiB)")
