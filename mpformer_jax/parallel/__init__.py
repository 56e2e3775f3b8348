"""Scale-out (DESIGN 4): mesh and logical-axis rules, shardings, vocabulary-parallel lookup,
multi-host start-up. Import the submodules directly; `embedding` is imported by the model and
must not import the rest of the library.
"""
