# Load nbcloud in every IPython kernel, so notebooks need no `%load_ext nbcloud`.
# Install: copy (or append) this file to ~/.ipython/profile_default/ipython_config.py,
# or run `make extension`.
c = get_config()  # noqa: F821  (provided by IPython when it reads this file)
c.InteractiveShellApp.extensions = ["nbcloud"]
