"""Make a published asv dashboard work without the internet.

asv's pages load jQuery, Flot, Bootstrap and three small plugins from CDNs (with
integrity hashes), so on a machine that cannot reach them the dashboard only says
"Can not determine continental origin of swallow". This fetches the same libraries
from the npm registry (``npm pack``), copies them into ``HTML_DIR/vendor`` and points
``index.html`` at them. Run it after each ``asv publish``:

    asv publish && python benchmarks/asv_offline.py .asv/html && asv preview
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

# CDN address in asv's index.html -> (npm package, file inside the package)
LIBRARIES = {
    "https://code.jquery.com/jquery-3.3.1.min.js": ("jquery@3.3.1", "dist/jquery.min.js"),
    "https://cdnjs.cloudflare.com/ajax/libs/flot/0.8.3/jquery.flot.min.js": ("flot@0.8.3", "jquery.flot.js"),
    "https://cdnjs.cloudflare.com/ajax/libs/flot/0.8.3/jquery.flot.time.min.js": ("flot@0.8.3", "jquery.flot.time.js"),
    "https://cdnjs.cloudflare.com/ajax/libs/flot/0.8.3/jquery.flot.selection.min.js": (
        "flot@0.8.3", "jquery.flot.selection.js"),
    "https://cdnjs.cloudflare.com/ajax/libs/flot/0.8.3/jquery.flot.categories.min.js": (
        "flot@0.8.3", "jquery.flot.categories.js"),
    "https://cdn.jsdelivr.net/npm/flot-orderbars@1.0.0/js/jquery.flot.orderBars.js": (
        "flot-orderbars@1.0.0", "js/jquery.flot.orderBars.js"),
    "https://cdnjs.cloudflare.com/ajax/libs/stupidtable/1.0.1/stupidtable.min.js": (
        "stupid-table-plugin@1.1.3", "stupidtable.min.js"),  # 1.0.1 is not on npm
    "https://cdnjs.cloudflare.com/ajax/libs/blueimp-md5/2.19.0/js/md5.min.js": ("blueimp-md5@2.19.0", "js/md5.min.js"),
    "https://cdn.jsdelivr.net/npm/bootstrap@3.1.1/dist/js/bootstrap.min.js": (
        "bootstrap@3.1.1", "dist/js/bootstrap.min.js"),
    "https://cdn.jsdelivr.net/npm/bootstrap@3.1.1/dist/css/bootstrap.min.css": (
        "bootstrap@3.1.1", "dist/css/bootstrap.min.css"),
}


def vendor(html_dir: Path) -> None:
    index = html_dir / "index.html"
    page = index.read_text()
    (html_dir / "vendor").mkdir(exist_ok=True)
    served = 0
    with tempfile.TemporaryDirectory() as scratch:
        unpacked: dict[str, Path] = {}
        for url, (package, member) in LIBRARIES.items():
            if url not in page:
                continue
            if package not in unpacked:
                name = subprocess.run(["npm", "pack", "--silent", package], cwd=scratch, check=True,
                                      capture_output=True, text=True).stdout.split()[-1]
                unpacked[package] = Path(scratch) / package.replace("@", "-")
                with tarfile.open(Path(scratch) / name) as archive:
                    archive.extractall(unpacked[package], filter="data")
            local = f"vendor/{Path(member).name}"
            shutil.copy(unpacked[package] / "package" / member, html_dir / local)
            page = page.replace(url, local)
            served += 1
    # The local copies are not byte for byte the CDN's files (some are not minified),
    # so the CDN's integrity hashes would refuse them.
    page = re.sub(r'\s+integrity="[^"]*"', "", page)
    index.write_text(page)
    left = re.findall(r'(?:src|href)="(https://[^"]*\.(?:js|css))"', page)
    print(f"{index}: {served} libraries served from vendor/"
          + (f"; still remote: {', '.join(left)}" if left else ""))


if __name__ == "__main__":
    vendor(Path(sys.argv[1] if len(sys.argv) > 1 else ".asv/html"))
