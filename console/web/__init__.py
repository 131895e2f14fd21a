"""`switchboard web`: the attached console in a browser (textual-serve's terminal page).

access.py decides who may use it (a token in a cookie); visitors.py runs one `switchboard
attach` process per browser tab; driver.py ends that process when the server goes away;
page.py is the HTML; server.py puts them together behind one aiohttp listener.
"""
