"""The `jaxnn` subcommands, one module each, outside the method packages.

A method package imports JAX and Flax when it loads; these modules import only
`jaxnn.configs` at the top, so `jaxnn COMMAND --help` builds its parser from the
config classes without loading JAX. Each handler imports its method when it runs.
"""
