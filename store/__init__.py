"""packyard's durable core: names, blobs, the catalog and the services built on them.

Nothing in here imports FastAPI, click, gitpython or any other package of ours, so the
data model can be read (and tested) without the product surface around it.
"""
