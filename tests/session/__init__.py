"""session tier"""
